"""Getting one session's chunks onto the bus: a bounded buffer and the loop that writes it.

`SessionPublisher` owns every Redis write of a capture session once it is registered:
the audio chunks (in seq order, batched into one round trip), the session heartbeat and,
at the end, the end marker. While Redis is unreachable it retries with backoff and the
`ChunkBuffer` holds the chunks, up to a bound in seconds of audio; past the bound the
oldest are dropped and counted (a live source), or the producer waits for room (a file
sent with --fast, so a replay never loses audio). When Redis answers again the publisher
first resyncs: it registers the session again if Redis lost it, stops if the session was
ended meanwhile, and skips chunks the stream already holds (a batch whose reply was
lost); then it sends the buffer in order and the heartbeat resumes.

Everything here runs on the event loop; capture threads hand chunks over with
`loop.call_soon_threadsafe(publisher.offer, chunk)` or `run_coroutine_threadsafe(put)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import RedisError

from bus import clock
from bus.events import AudioChunk, ControlEvent
from bus.keys import Partition
from bus.logs import get_logger
from bus.producer import Publisher
from bus.registry import Registry
from bus.settings import BusSettings
from capture_agent.audio_io import TARGET_RATE
from capture_agent.chunker import Chunk

log = get_logger("capture.publisher")

T = TypeVar("T")
LINK_ERRORS = (RedisError, OSError, TimeoutError)


class SessionLost(RuntimeError):
    """The session was ended by someone else (e.g. the janitor, during a long outage)."""


@dataclass(frozen=True)
class SessionRef:
    room: str
    session: str
    source_lang: str
    speaker: str = ""

    @property
    def partition(self) -> Partition:
        return Partition(self.room, self.session)


@dataclass
class PublishStats:
    """What the publisher did so far (read by the meter and the metrics)."""

    published: int = 0  # chunks written to the stream
    published_samples: int = 0
    dropped: int = 0  # chunks dropped from the full buffer (lost)
    dropped_samples: int = 0
    buffered: int = 0  # chunks waiting to be written
    buffered_samples: int = 0
    outages: int = 0  # times Redis was lost
    redis_up: bool = True
    rate: int = TARGET_RATE

    @property
    def buffered_s(self) -> float:
        return self.buffered_samples / self.rate


def to_event(chunk: Chunk, room: str, session: str) -> AudioChunk:
    """The bus event of a chunk (`emitted` is set when it is written)."""
    return AudioChunk(
        room=room,
        session=session,
        seq=chunk.seq,
        capture_start=chunk.capture_start,
        capture_end=chunk.capture_end,
        utterance=chunk.utterance,
        offset=chunk.offset,
        samples=chunk.samples,
        rate=chunk.rate,
        speech_prob=min(1.0, max(0.0, chunk.speech_prob)),
        vad=chunk.vad,  # type: ignore[arg-type]
        utt_start=chunk.utt_start,
        utt_end=chunk.utt_end,
        pcm=chunk.pcm,
    )


class ChunkBuffer:
    """Chunks not yet written, oldest first, bounded by `max_samples` of audio.

    The newest chunk is always kept, so a bound shorter than one chunk still works. An
    empty chunk (an utterance's end mark) weighs nothing and is dropped only when it is
    the oldest and audio behind it must go.
    """

    def __init__(self, max_samples: int, stats: PublishStats | None = None) -> None:
        if max_samples <= 0:
            raise ValueError("the buffer bound must be positive")
        self.max_samples = max_samples
        self.stats = stats or PublishStats()
        self._chunks: deque[Chunk] = deque()
        self._samples = 0
        self._has_data = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def samples(self) -> int:
        return self._samples

    def _update(self) -> None:
        self.stats.buffered = len(self._chunks)
        self.stats.buffered_samples = self._samples
        if self._chunks:
            self._has_data.set()
        else:
            self._has_data.clear()
        if self._samples < self.max_samples or not self._chunks:
            self._has_room.set()
        else:
            self._has_room.clear()

    def push(self, chunk: Chunk) -> list[Chunk]:
        """Add a chunk; drops (and returns) the oldest ones while over the bound."""
        self._chunks.append(chunk)
        self._samples += chunk.samples
        dropped: list[Chunk] = []
        while self._samples > self.max_samples and len(self._chunks) > 1:
            old = self._chunks.popleft()
            self._samples -= old.samples
            dropped.append(old)
        self.stats.dropped += len(dropped)
        self.stats.dropped_samples += sum(c.samples for c in dropped)
        self._update()
        return dropped

    async def put(self, chunk: Chunk) -> None:
        """Add a chunk once there is room (never drops); returns at once if closed."""
        while (
            not self._closed and self._chunks and self._samples + chunk.samples > self.max_samples
        ):
            self._has_room.clear()
            await self._has_room.wait()
        if not self._closed:
            self.push(chunk)

    def peek(self, count: int) -> list[Chunk]:
        return [self._chunks[i] for i in range(min(count, len(self._chunks)))]

    def pop(self, count: int) -> list[Chunk]:
        out = [self._chunks.popleft() for _ in range(min(count, len(self._chunks)))]
        self._samples -= sum(c.samples for c in out)
        self._update()
        return out

    def pop_through(self, seq: int) -> list[Chunk]:
        """Remove the chunks with a seq up to `seq` (already in the stream)."""
        count = 0
        while count < len(self._chunks) and self._chunks[count].seq <= seq:
            count += 1
        return self.pop(count)

    async def wait_for_data(self, seconds: float) -> None:
        """Return when a chunk is buffered (or wake() was called), at most after `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._has_data.wait(), seconds)

    def wake(self) -> None:
        """Wake a wait_for_data() waiter even though nothing was added."""
        self._has_data.set()

    def close(self) -> None:
        """Release producers waiting in put() (the agent is aborting)."""
        self._closed = True
        self._has_room.set()


@dataclass(frozen=True)
class PublisherTiming:
    heartbeat_s: float = 2.0  # session heartbeat period
    batch: int = 64  # chunks per round trip at most
    backoff_min_s: float = 0.1  # first retry delay after a failure
    backoff_max_s: float = 2.0  # retry delay cap
    op_timeout_s: float = 5.0  # one Redis round trip longer than this counts as a failure


class SessionPublisher:
    """Writes a registered session's chunks and heartbeats; see the module docstring."""

    def __init__(
        self,
        client: Any,
        settings: BusSettings,
        session: SessionRef,
        buffer: ChunkBuffer,
        timing: PublisherTiming | None = None,
    ) -> None:
        self.r = client
        self.session = session
        self.buffer = buffer
        self.stats = buffer.stats
        self.timing = timing or PublisherTiming()
        self.keys = settings.keys
        self.key = self.keys.stream("audio", session.partition)
        self.registry = Registry(client, self.keys, cluster=settings.redis_cluster)
        self._writer = Publisher(client, settings)
        self._input_done = asyncio.Event()
        self._down_since: float | None = None
        self._drop_warned = False

    # -- input (from the capture side) -----------------------------------------------
    def offer(self, chunk: Chunk) -> None:
        """A live chunk: buffer it, dropping the oldest when the buffer is full."""
        dropped = self.buffer.push(chunk)
        if dropped and not self._drop_warned:
            self._drop_warned = True
            log.warning(
                "buffer full: dropping the oldest chunks",
                buffer_s=self.buffer.max_samples / self.stats.rate,
                first_seq=dropped[0].seq,
            )

    async def put(self, chunk: Chunk) -> None:
        """A chunk of a file sent as fast as possible: wait for room, never drop."""
        await self.buffer.put(chunk)

    def input_done(self) -> None:
        """No more chunks will come: run() returns once the buffer is written."""
        self._input_done.set()
        self.buffer.wake()

    # -- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        """Write chunks and heartbeats until the input is done and the buffer is empty.

        Redis failures are retried forever (with backoff); SessionLost ends the loop.
        """
        t = self.timing
        backoff = t.backoff_min_s
        next_heartbeat = time.monotonic() + t.heartbeat_s
        while True:
            try:
                if self._down_since is not None:
                    await self._resync()
                if time.monotonic() >= next_heartbeat:
                    await self._op(self.registry.heartbeat(self.session.room, self.session.session))
                    next_heartbeat = time.monotonic() + t.heartbeat_s
                if len(self.buffer):
                    await self._write_batch()
                elif self._input_done.is_set():
                    return
                else:
                    await self.buffer.wait_for_data(max(0.0, next_heartbeat - time.monotonic()))
                backoff = t.backoff_min_s
            except LINK_ERRORS as exc:
                self._link_lost(exc)
                await asyncio.sleep(backoff)
                backoff = min(t.backoff_max_s, backoff * 2)

    async def _write_batch(self) -> None:
        batch = self.buffer.peek(self.timing.batch)
        s = self.session
        events = [to_event(c, s.room, s.session) for c in batch]
        await self._op(self._writer.publish_many(self.key, list(events)))
        self.buffer.pop(len(batch))
        self.stats.published += len(batch)
        self.stats.published_samples += sum(c.samples for c in batch)

    async def _op(self, call: Awaitable[T]) -> T:
        return await asyncio.wait_for(call, self.timing.op_timeout_s)

    def _link_lost(self, exc: BaseException) -> None:
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self._drop_warned = False
        self.stats.outages += 1
        self.stats.redis_up = False
        log.warning(
            "redis unreachable: buffering chunks and retrying",
            error=str(exc) or type(exc).__name__,
            buffered=len(self.buffer),
            buffer_s=self.buffer.max_samples / self.stats.rate,
        )

    async def _resync(self) -> None:
        """After an outage: check the registration, skip what the stream already holds."""
        s = self.session
        status = await self._op(self.r.hget(self.keys.status(s.room), s.session))
        if status is None:
            log.warning("redis lost the session's registration: registering it again")
            await self._op(
                self.registry.register_session(s.room, s.session, s.source_lang, s.speaker)
            )
        elif status != b"active":
            raise SessionLost(
                f"session {s.room}/{s.session} was ended while Redis was unreachable "
                f"(status {status.decode(errors='replace')!r})"
            )
        else:
            await self._op(self.registry.heartbeat(s.room, s.session))
        last = await self._op(self.r.xrevrange(self.key, count=1))
        if last:
            fields = last[0][1]
            if fields.get(b"type") == b"audio":
                done = self.buffer.pop_through(int(fields[b"seq"]))
                if done:
                    self.stats.published += len(done)
                    self.stats.published_samples += sum(c.samples for c in done)
                    log.info("chunks already written before the outage", chunks=len(done))
        down_s = time.monotonic() - (self._down_since or time.monotonic())
        self._down_since = None
        self.stats.redis_up = True
        log.info(
            "redis is back: sending the buffer",
            outage_s=round(down_s, 2),
            buffered=len(self.buffer),
            dropped_in_session=self.stats.dropped,
        )

    # -- the end -------------------------------------------------------------------------
    async def end_session(self, reason: str, next_seq: int, capture_time: float) -> None:
        """Append the end marker (seq `next_seq`) and mark the session ended; retried."""
        s = self.session
        now = clock.now()
        marker = ControlEvent.end_of(s.room, s.session, at=capture_time, seq=next_seq,
                                     reason=reason, emitted=now, source_lang=s.source_lang,
                                     speaker=s.speaker)
        backoff = self.timing.backoff_min_s
        while True:
            try:
                status = await self._op(self.r.hget(self.keys.status(s.room), s.session))
                if status == b"ended":
                    return  # an earlier attempt went through (or someone else ended it)
                if status is None:  # Redis lost the registration since the last write
                    await self._op(
                        self.registry.register_session(s.room, s.session, s.source_lang, s.speaker)
                    )
                await self._op(
                    self.registry.end_session(
                        s.room, s.session, reason, marker_stream=self.key, marker=marker
                    )
                )
                return
            except LINK_ERRORS as exc:
                self._link_lost(exc)
                await asyncio.sleep(backoff)
                backoff = min(self.timing.backoff_max_s, backoff * 2)

    async def remove_session(self) -> None:
        """Undo the registration (nothing was ever written for it); retried."""
        backoff = self.timing.backoff_min_s
        while True:
            try:
                await self._op(
                    self.registry.remove_session(self.session.room, self.session.session)
                )
                return
            except LINK_ERRORS as exc:
                self._link_lost(exc)
                await asyncio.sleep(backoff)
                backoff = min(self.timing.backoff_max_s, backoff * 2)
