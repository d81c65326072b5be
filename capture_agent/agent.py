"""The capture agent on the bus: source -> processor -> publisher, inside a registered session.

`CaptureAgent.run()`:

1. the caller has already opened the source and loaded the VAD, so a bad file or a
   missing microphone fails before anything is registered;
2. connects (RedisUnavailable: one line, exit 3 through bus.command.run_async), refuses a
   session id that is already registered, registers the session;
3. runs the capture in a thread (decoding, pacing and VAD block there) while the event
   loop publishes chunks, sends heartbeats and redraws the meter;
4. on end of input, Ctrl-C or SIGTERM: the processor is flushed (the last utterance is
   closed), the buffer is written, and the session is ended with the end marker. A
   second signal stops waiting for an unreachable Redis.

An input error found after registering (a file truncated mid-stream) ends the session
with reason "error", or removes the registration if no chunk was written yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future as ThreadFuture
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from bus import clock as bus_clock
from bus.connection import RedisUnavailable, connect
from bus.logs import get_logger
from bus.settings import BusSettings
from bus.tasks import cancel_and_wait, within
from capture_agent.chunker import Chunk
from capture_agent.meter import TerminalMeter
from capture_agent.metrics import CaptureMetrics
from capture_agent.pipeline import CaptureProcessor
from capture_agent.publisher import (
    ChunkBuffer,
    PublisherTiming,
    PublishStats,
    SessionLost,
    SessionPublisher,
    SessionRef,
)
from capture_agent.sources import AudioSource

log = get_logger("capture")

EXIT_OK = 0
EXIT_INCOMPLETE = 1  # chunks not written, or the session was lost
EXIT_INPUT = 2  # bad input or options
STATUS_PERIOD_S = 0.1
CAPTURE_STOP_WAIT_S = 5.0  # how long a stop waits for the capture thread to flush


@dataclass(frozen=True)
class AgentOptions:
    session: SessionRef
    buffer_s: float = 60.0  # audio held while Redis is unreachable
    live: bool = True  # drop the oldest when the buffer is full; False: wait (a --fast file)
    drain_timeout_s: float = 30.0  # at the end, how long to keep trying to write the buffer
    timing: PublisherTiming = field(default_factory=PublisherTiming)


class SessionExists(RuntimeError):
    """The session id is already registered (active or ended) in the room."""


class CaptureAgent:
    def __init__(
        self,
        settings: BusSettings,
        options: AgentOptions,
        source: AudioSource,
        processor: CaptureProcessor,
        *,
        client: Any = None,
        meter: TerminalMeter | None = None,
        metrics: CaptureMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.source = source
        self.processor = processor
        self.meter = meter
        self.metrics = metrics or CaptureMetrics()
        self.stats = PublishStats(rate=processor.stats.rate)
        self.buffer = ChunkBuffer(round(options.buffer_s * self.stats.rate), self.stats)
        self.publisher: SessionPublisher | None = None
        self.metrics_port: int | None = None
        self._client = client
        self._stop = threading.Event()  # read by the capture thread
        self._stop_requested = asyncio.Event()
        self._abort = asyncio.Event()
        self._last_capture_time: float | None = None
        self.input_error: Exception | None = None
        self.end_reason = ""

    # -- control ----------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the session cleanly (first Ctrl-C / SIGTERM); a second call aborts."""
        if self._stop_requested.is_set():
            self._abort.set()
            self.buffer.close()
            return
        self._stop.set()
        self._stop_requested.set()

    # -- run ------------------------------------------------------------------------------
    async def run(self, *, handle_signals: bool = False) -> int:
        s = self.options.session
        client = self._client or await connect(self.settings)
        own_client = self._client is None
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        server = self._serve_metrics()
        try:
            publisher = self.publisher = SessionPublisher(
                client, self.settings, s, self.buffer, self.options.timing
            )
            try:
                await self._register(publisher)
            except SessionExists as exc:
                self.source.close()
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_INPUT
            return await self._run_session(publisher, loop)
        finally:
            # the signal handlers stay until the loop closes: removed here, a SIGTERM from a
            # supervisor during the last awaits would kill the process by the default action
            if server is not None:
                server.shutdown()
            if own_client:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _register(self, publisher: SessionPublisher) -> None:
        s = self.options.session
        try:
            existing = await publisher.registry.session(s.room, s.session)
            if existing is not None:
                raise SessionExists(
                    f"session {s.session!r} is already registered in room {s.room!r} "
                    f"({existing.status}); use a new session id"
                )
            await publisher.registry.register_session(s.room, s.session, s.source_lang, s.speaker)
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"lost Redis while registering the session: {exc}") from None
        log.info(
            "session registered",
            room=s.room,
            session=s.session,
            lang=s.source_lang,
            speaker=s.speaker,
            source=self.source.label,
            stream=publisher.key,
            **bus_clock.log_fields(),
        )

    async def _run_session(
        self, publisher: SessionPublisher, loop: asyncio.AbstractEventLoop
    ) -> int:
        captured: asyncio.Future[Exception | None] = loop.create_future()
        thread = threading.Thread(
            target=self._capture, args=(loop, publisher, captured), name="capture", daemon=True
        )
        publishing = asyncio.create_task(publisher.run(), name="publish")
        status = asyncio.create_task(self._status_loop(), name="status")
        thread.start()
        try:
            stop_wait = asyncio.create_task(self._stop_requested.wait())
            first: set[asyncio.Future[Any]] = {captured, publishing, stop_wait}
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if publishing.done():  # only SessionLost ends it early
                return self._session_lost(publishing)
            if not captured.done():  # a stop: let the thread flush the last utterance
                self._stop.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(captured), CAPTURE_STOP_WAIT_S)
                if not captured.done():
                    log.warning("the capture thread did not stop; its last audio is not sent")
            self.input_error = captured.result() if captured.done() else None
            publisher.input_done()
            if not await self._drain(publishing):
                return self._session_lost(publishing)
            return await self._end(publisher)
        finally:
            status.cancel()
            self._stop.set()
            self.buffer.close()
            await cancel_and_wait([publishing, status], what="capture agent")
            self._update_status(final=True)

    def _capture(
        self,
        loop: asyncio.AbstractEventLoop,
        publisher: SessionPublisher,
        done: asyncio.Future[Exception | None],
    ) -> None:
        """The capture thread: source -> processor -> publisher, then a flush."""
        deliver = self._deliverer(loop, publisher)
        processor = self.processor
        processor.stats.total_samples = self.source.total_samples
        error: Exception | None = None
        try:
            try:
                for block in self.source:
                    for chunk in processor.feed(block):
                        deliver(chunk)
                    if self._stop.is_set():
                        break
            except Exception as exc:  # an input failure: still close the last utterance
                error = exc
            processor.stats.overflows = max(processor.stats.overflows, self.source.overflows)
            for chunk in processor.flush():
                deliver(chunk)
        except Exception as exc:
            error = error or exc
        finally:
            self.source.close()
            with contextlib.suppress(RuntimeError):  # the loop is gone (aborted)
                loop.call_soon_threadsafe(_set_result, done, error)

    def _deliverer(
        self, loop: asyncio.AbstractEventLoop, publisher: SessionPublisher
    ) -> Callable[[Chunk], None]:
        def live(chunk: Chunk) -> None:
            self._last_capture_time = chunk.capture_end
            loop.call_soon_threadsafe(publisher.offer, chunk)

        def paced_by_publisher(chunk: Chunk) -> None:
            self._last_capture_time = chunk.capture_end
            future: ThreadFuture[None] = asyncio.run_coroutine_threadsafe(
                publisher.put(chunk), loop
            )
            future.result()

        return live if self.options.live else paced_by_publisher

    async def _drain(self, publishing: asyncio.Task[None]) -> bool:
        """Wait for the buffer to be written; False if the session was lost."""
        abort = asyncio.create_task(self._abort.wait())
        try:
            done, _ = await asyncio.wait(
                {publishing, abort},
                timeout=self.options.drain_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            abort.cancel()
        if publishing in done:
            return publishing.exception() is None
        await cancel_and_wait([publishing], what="publisher")
        log.error(
            "chunks not written: redis unreachable at the end",
            unsent=len(self.buffer),
            unsent_s=round(self.stats.buffered_s, 2),
        )
        return True

    async def _end(self, publisher: SessionPublisher) -> int:
        """End the session (or undo it), after the buffer was written as far as possible."""
        unsent = len(self.buffer)
        if self.input_error is not None:
            reason = "error"
        elif self._stop_requested.is_set():
            reason = "stopped"
        else:  # a source may say why its input ended (the browser speaker left, went away)
            reason = getattr(self.source, "end_reason", None) or "eof"
        self.end_reason = reason
        timeout = 0.5 if unsent or self._abort.is_set() else self.options.drain_timeout_s
        next_seq = self.processor.chunker.next_seq
        capture_time = self._last_capture_time or bus_clock.now()
        try:
            if reason == "error" and self.stats.published == 0:
                await within(publisher.remove_session(), timeout, what="removing the session")
                self.end_reason = "removed"
            else:
                await within(publisher.end_session(reason, next_seq, capture_time), timeout,
                             what="ending the session")
        except TimeoutError:
            log.error(
                "could not end the session: redis unreachable; the workers will end it "
                "when its heartbeat times out",
                session_timeout_s=self.settings.session_timeout_s,
            )
            return EXIT_INCOMPLETE
        log.info(
            "session ended",
            reason=self.end_reason,
            chunks=self.stats.published,
            audio_s=round(self.stats.published_samples / self.stats.rate, 2),
            dropped=self.stats.dropped,
            outages=self.stats.outages,
            overflows=self.processor.stats.overflows,
        )
        if self.input_error is not None:
            print(f"error: {self.input_error}", file=sys.stderr)
            return EXIT_INPUT
        return EXIT_INCOMPLETE if unsent else EXIT_OK

    def _session_lost(self, publishing: asyncio.Task[None]) -> int:
        self._stop.set()
        self.buffer.close()
        exc = publishing.exception()
        if isinstance(exc, SessionLost):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INCOMPLETE
        raise exc if exc is not None else RuntimeError("the publisher stopped early")

    # -- status: meter and metrics ----------------------------------------------------------
    async def _status_loop(self) -> None:
        while True:
            self._update_status()
            await asyncio.sleep(STATUS_PERIOD_S)

    def _update_status(self, final: bool = False) -> None:
        self.metrics.update(self.processor.stats, self.stats)
        if self.meter is not None:
            self.meter.update(self.processor.stats, final=final, publish=self.stats)

    def _serve_metrics(self) -> Any:
        if self.settings.metrics_port is None:
            return None
        from prometheus_client import start_http_server

        server, _thread = start_http_server(
            self.settings.metrics_port, registry=self.metrics.registry
        )
        self.metrics_port = int(server.server_port)
        log.info("metrics served", port=self.metrics_port)
        return server


def _set_result(future: asyncio.Future[Exception | None], value: Exception | None) -> None:
    if not future.done():
        future.set_result(value)
