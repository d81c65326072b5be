"""The browser speaker: `s2st capture`'s pipeline, fed by the speaker page's websocket.

Each speaker session is a :class:`~capture_agent.agent.CaptureAgent` (session registration,
heartbeat, Silero VAD, utterances, chunk events, outage buffering, end marker) whose source
is a :class:`~capture_agent.sources.PushedSource`: the page's 16 kHz int16 frames, each with
its session sample offset. The agent outlives the websocket: a page whose link dropped has
``grace_s`` to come back with its session id and goes on where the server's audio stops
(``ready.offset``), frames sent twice dropped by offset, so the chunk seqs go on without a
gap or a repeat. Without a reconnect in time the session ends (reason ``disconnected``);
the page's "leave" ends it at once (``left``).

Wire format, page to server: a binary frame ``float64 LE session sample offset | int16 LE
mono PCM at 16 kHz``; JSON ``{"type": "leave"}``. Server to page: JSON ``ready`` (session,
offset to send from), ``status`` every half second (offset received, VAD state, chunks,
buffered, Redis up), the session's own ``caption`` messages (the room feed's), ``ended``.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bus.logs import get_logger
from bus.settings import BusSettings
from bus.tasks import cancel_and_wait
from capture_agent.agent import AgentOptions, CaptureAgent
from capture_agent.pipeline import CaptureConfig, CaptureProcessor
from capture_agent.publisher import SessionRef
from capture_agent.sources import PushedSource

log = get_logger("player.web.speak")
HEADER = struct.Struct("<d")  # the frame's session sample offset
MAX_FRAME_SAMPLES = 16000  # one second: a page sends 50 ms frames
Closer = Callable[[], Coroutine[Any, Any, None]]  # closes a superseded websocket


@dataclass
class LiveSpeaker:
    """One browser speaker session: its pipeline and which websocket feeds it now."""

    ref: SessionRef
    source: PushedSource
    agent: CaptureAgent
    task: asyncio.Task[int] | None = None
    connection: int = 0  # the websocket feeding it now (0: none)
    grace: asyncio.TimerHandle | None = None
    closers: dict[int, Closer] = field(default_factory=dict)  # connection -> its close

    @property
    def session(self) -> str:
        return self.ref.session

    @property
    def source_finished(self) -> bool:
        return self.source.finished

    def status(self) -> dict[str, Any]:
        stats, pub = self.agent.processor.stats, self.agent.stats
        return {"type": "status", "offset": self.source.next_offset, "vad": stats.vad_state,
                "level_dbfs": round(stats.level_dbfs, 1), "chunks": stats.chunks_sent,
                "published": pub.published, "buffered_s": round(pub.buffered_s, 2),
                "dropped": pub.dropped, "redis_up": pub.redis_up,
                "duplicate_samples": self.source.duplicate_samples,
                "gap_samples": self.source.gap_samples}


class Speakers:
    """The browser speaker sessions of one `s2st web` process."""

    def __init__(self, settings: BusSettings, client: Any, *, grace_s: float = 30.0,
                 config: CaptureConfig | None = None) -> None:
        # the agents share the server's Redis client; /metrics is the server's, not theirs
        self.settings = settings.model_copy(update={"metrics_port": None})
        self.client = client
        self.grace_s = grace_s
        self.config = config or CaptureConfig()
        self.live: dict[tuple[str, str], LiveSpeaker] = {}
        self._connections = 0
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self, room: str, lang: str, speaker: str) -> LiveSpeaker:
        """A new session in ``room`` (registered by its agent before its first chunk)."""
        ref = SessionRef(room, "web-" + secrets.token_hex(6), lang, speaker)
        source = PushedSource(label=f"browser {speaker or ref.session}")
        processor = await asyncio.to_thread(CaptureProcessor, self.config)  # loads the VAD
        agent = CaptureAgent(self.settings, AgentOptions(session=ref), source, processor,
                             client=self.client)
        live = LiveSpeaker(ref, source, agent)
        live.task = asyncio.create_task(agent.run(), name=f"speaker {ref.session}")
        live.task.add_done_callback(lambda _: self._ended(live))
        self.live[(room, ref.session)] = live
        log.info("browser speaker started", room=room, session=ref.session, lang=lang,
                 speaker=speaker)
        return live

    def resume(self, room: str, session: str) -> LiveSpeaker | None:
        live = self.live.get((room, session))
        return live if live is not None and not live.source_finished else None

    def attach(self, live: LiveSpeaker, close: Closer) -> int:
        """This websocket feeds ``live`` from now on; an older one is closed."""
        if live.grace is not None:
            live.grace.cancel()
            live.grace = None
        self._connections += 1
        old = live.closers.pop(live.connection, None)
        if old is not None:
            self._closing.add(task := asyncio.create_task(old()))
            task.add_done_callback(self._closing.discard)
        live.connection = self._connections
        live.closers[live.connection] = close
        return live.connection

    def detach(self, live: LiveSpeaker, connection: int) -> None:
        """The websocket went away: the session waits ``grace_s`` for the page to return."""
        live.closers.pop(connection, None)
        if live.connection != connection or live.source_finished:
            return
        live.connection = 0
        loop = asyncio.get_running_loop()
        live.grace = loop.call_later(self.grace_s, self.finish, live, "disconnected")
        log.info("browser speaker disconnected: waiting for it", session=live.session,
                 grace_s=self.grace_s)

    def finish(self, live: LiveSpeaker, reason: str) -> None:
        """End the session once what was received is processed and written."""
        if live.grace is not None:
            live.grace.cancel()
            live.grace = None
        live.source.finish(reason)

    def _ended(self, live: LiveSpeaker) -> None:
        live.source.finish(live.source.end_reason)
        self.live.pop((live.ref.room, live.session), None)
        task = live.task
        error = None if task is None or task.cancelled() else task.exception()
        if error is not None:  # e.g. Redis unreachable while registering
            live.agent.end_reason = live.agent.end_reason or "error"
            log.error("browser speaker failed", session=live.session, error=str(error))
        log.info("browser speaker ended", session=live.session, reason=live.agent.end_reason)

    async def close(self, timeout_s: float = 10.0) -> None:
        """The server stops: every session is ended (its last utterance flushed)."""
        tasks = [live.task for live in self.live.values() if live.task is not None]
        for live in list(self.live.values()):
            self.finish(live, "stopped")
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            await cancel_and_wait(list(pending), what="browser speakers")


def parse_frame(data: bytes) -> tuple[int, bytes]:
    """(session sample offset, PCM) of a page's binary frame; ValueError if malformed."""
    if len(data) < HEADER.size:
        raise ValueError("a frame shorter than its header")
    (offset,) = HEADER.unpack_from(data)
    pcm = data[HEADER.size:]
    if not (offset >= 0 and offset == int(offset)) or len(pcm) % 2 or \
            len(pcm) // 2 > MAX_FRAME_SAMPLES:
        raise ValueError("a malformed audio frame")
    return int(offset), pcm


def frame(offset: int, pcm: bytes) -> bytes:
    """A page's binary frame (what speak.js sends; for tests and tools)."""
    return HEADER.pack(float(offset)) + pcm


