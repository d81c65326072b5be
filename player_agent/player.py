"""The player: a room's speech in one language, read from the bus, ordered, played, measured.

Three tasks share one :class:`~player_agent.jitter.JitterBuffer`:

- the reader follows the room's speech stream with XREAD (see subscriber.py) and pushes
  each piece, and each session's end marker, into the buffer;
- the play loop takes the next piece when the output is ready for it and plays it,
  recording its latency;
- the listener keeps ``lang`` among the room's targets (``Registry.add_listener``) so the
  MT and TTS stages produce it while someone listens.

With ``until_ended`` a fourth task watches the room and stops the player once every session
it heard has ended and everything was played. That wait is bounded: once the room is quiet
(no active session, nothing left to play), a session whose end marker has not reached the
speech stream is waited for at most ``end_wait_s`` plus the length of the session (a stage
may still work through its backlog); a room where nobody speaks at all, ``start_wait_s``.
A player that gives up says, for each such session, where its end marker stopped
(:mod:`player_agent.end_trace`), and its report says it did not finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from bus import clock
from bus.events import ControlEvent, Speech
from bus.ids import check_id, check_lang
from bus.keys import Keys
from bus.logs import get_logger
from bus.registry import Registry, SessionInfo
from bus.tasks import StopFlag, cancel_and_wait
from pipeline import PIPELINE
from player_agent.end_trace import trace_end
from player_agent.jitter import JitterBuffer, JitterStats, Piece
from player_agent.latency import LatencyRecorder, count_outcome
from player_agent.outputs import Sink
from player_agent.subscriber import LIVE, StreamReader

log = get_logger("player")


class UnknownRoom(ValueError):
    """The room is not registered on this bus."""


@dataclass
class PlayerConfig:
    room: str
    lang: str
    position: str = LIVE  # where to start reading: "$" = live (late join), or an entry id
    hold_s: float = 0.15
    deadline_s: float = 1.0
    listener_ttl_s: float = 30.0
    until_ended: bool = False  # stop once the room has no active session and all is played
    # with until_ended: once the room is quiet, how long a session's end marker is waited for,
    # plus the session's own length; and how long a room where nobody speaks is waited for
    end_wait_s: float = 30.0
    start_wait_s: float = 300.0
    block_ms: int = 200
    session: str | None = None  # only this session's speech (default: the whole room's)

    def __post_init__(self) -> None:
        check_id(self.room, "room id")
        check_lang(self.lang)
        if self.session is not None:
            check_id(self.session, "session id")
        if self.listener_ttl_s <= 0:
            raise ValueError("listener_ttl_s must be positive")
        if not self.end_wait_s > 0 or not self.start_wait_s > 0:
            raise ValueError("end_wait_s and start_wait_s must be positive")


@dataclass(frozen=True)
class Played:
    session: str
    seq: int
    part: int
    speaker: str
    text: str
    entry_id: str
    capture_start: float
    capture_end: float
    available: float  # read from the bus (wall clock)
    started: float  # started playing (wall clock)
    duration: float


@dataclass
class PlayReport:
    played: list[Played] = field(default_factory=list)
    stats: JitterStats = field(default_factory=JitterStats)
    latency: LatencyRecorder | None = None
    malformed: int = 0
    # with until_ended: why the player gave up before every session ended (empty: it did not)
    unfinished: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.unfinished

    def text(self) -> str:
        s = self.stats
        lines = [f"pieces played={s.released} duplicates={s.duplicates} late={s.late} "
                 f"missing={s.missing} (gaps skipped={s.gaps_skipped}) malformed={self.malformed}"]
        if self.latency is not None:
            lines.append(self.latency.report())
        lines += [f"gave up: {why}" for why in self.unfinished]
        return "\n".join(lines)


class Player:
    def __init__(self, client: Any, keys: Keys, config: PlayerConfig, sink: Sink) -> None:
        self.r = client
        self.keys = keys
        self.config = config
        self.sink = sink
        self.registry = Registry(client, keys)
        # what a player reads (pipeline/__init__.py): the room's speech in its language
        [family] = PIPELINE.reads("player")
        self.stream = family.key(keys, config.room, lang=config.lang)
        self.buffer = JitterBuffer(config.hold_s, config.deadline_s)
        self.reader = StreamReader(client, block_ms=config.block_ms)
        self.report = PlayReport(stats=self.buffer.stats, latency=LatencyRecorder(config.lang))
        self._wake = asyncio.Event()
        self._caught_up = False
        self._origins: dict[str, float] = {}
        self._heard: set[str] = set()  # sessions with a piece or an end marker read
        self._playing = False  # a piece is being played right now
        self._stopping = StopFlag()  # checked by every loop: a cancellation can be lost

    async def run(self, stop: asyncio.Event | None = None) -> PlayReport:
        """Play until ``stop`` is set (or, with ``until_ended``, the room falls quiet)."""
        cfg = self.config
        if not await self.registry.room_exists(cfg.room):
            raise UnknownRoom(f"room {cfg.room!r} does not exist (s2st room list)")
        stop = stop or asyncio.Event()
        await self.registry.add_listener(cfg.room, cfg.lang, cfg.listener_ttl_s)
        await self.reader.add(self.stream, cfg.position)
        log.info("playing", room=cfg.room, lang=cfg.lang, stream=self.stream,
                 position=self.reader.positions[self.stream])
        tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("read", self._read()), ("listen", self._listen()), ("watch", self._watch(stop)))]
        player = asyncio.create_task(self._play(stop), name="play")
        # a stop (signal, or the room fell quiet) ends playback at once, even mid-piece
        stopper: asyncio.Task[Any] = asyncio.create_task(stop.wait(), name="stop")
        try:
            pending: set[asyncio.Task[Any]] = {player, stopper, *tasks}
            while player in pending and stopper in pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if not t.cancelled() and (exc := t.exception()) is not None:
                        raise exc  # the output failed, or a bug: do not go on silently
        finally:
            # the loops check the flag too: a cancellation arriving as a Redis reply comes in
            # can be lost (Python 3.11), and a loop that missed it would run for ever
            self._stopping.set()
            self._wake.set()
            await cancel_and_wait([player, stopper, *tasks], what="player")
            await self.sink.drain()
        self.report.malformed = self.reader.malformed
        return self.report

    # -- tasks ---------------------------------------------------------------------
    async def _read(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                entries = await self.reader.read()
            except (RedisError, OSError) as exc:  # Redis restarting: keep the position, retry
                log.warning("reading the speech stream failed; retrying", error=str(exc),
                            retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            self._caught_up = not entries
            only = self.config.session
            for entry in entries:
                event = entry.event
                if only is not None and event.session != only:
                    continue
                if isinstance(event, Speech) and event.lang == self.config.lang:
                    self._heard.add(event.session)
                    result = self.buffer.push(Piece(
                        session=event.session, seq=event.seq, part=event.part, last=event.last,
                        capture_start=event.capture_start, capture_end=event.capture_end,
                        arrived=entry.read_at, item=entry,
                    ))
                    if result != "accepted":
                        count_outcome(result, self.config.lang)
                        log.debug("piece dropped", result=result, session=event.session,
                                  seq=event.seq, part=event.part)
                elif isinstance(event, ControlEvent) and event.action == "end":
                    self._heard.add(event.session)
                    self.buffer.end_session(event.session)
            self._wake.set()

    async def _listen(self) -> None:
        ttl = self.config.listener_ttl_s
        while not self._stopping:
            await asyncio.sleep(ttl / 3)
            try:
                await self.registry.add_listener(self.config.room, self.config.lang, ttl)
            except Exception as exc:  # a Redis hiccup must not stop the playback
                log.warning("listener refresh failed", error=str(exc))

    async def _watch(self, stop: asyncio.Event) -> None:
        """With ``until_ended``: stop when the room is quiet and everything was played.

        Quiet: no session of the room is active, and nothing is left to play. The player stops
        once every session seen active while playing (and still registered), or heard on the
        stream, has had its end marker on the speech stream (its last piece was written). A
        player started before anyone speaks waits for a session. Both waits are bounded (see
        the module doc); giving up stops the player with ``report.unfinished`` saying why.
        """
        cfg = self.config
        if not cfg.until_ended:
            return
        seen_active: set[str] = set()
        awaited: list[str] = []
        lengths: dict[str, float] = {}  # each session's length, from the registry
        began = time.monotonic()
        quiet_since: float | None = None
        while not stop.is_set() and not self._stopping:
            await asyncio.sleep(0.25)
            try:
                sessions = await self.registry.sessions(cfg.room)
            except (RedisError, OSError) as exc:
                log.warning("reading the room's sessions failed", error=str(exc))
                continue
            if cfg.session is not None:
                sessions = [s for s in sessions if s.session == cfg.session]
            seen_active.update(s.session for s in sessions if s.active)
            # a session removed from the room (a capture agent that failed before its first
            # chunk undoes its registration) will never have an end marker: not waited for
            seen_active &= {s.session for s in sessions}
            lengths.update((s.session, _length(s)) for s in sessions)
            if not (self._caught_up and self.buffer.idle()) or self._playing \
                    or any(s.active for s in sessions):
                quiet_since = None
                continue  # (the last piece plays to its end before the player stops)
            now = time.monotonic()
            quiet_since = now if quiet_since is None else quiet_since
            sessions_seen = seen_active | self._heard
            missing = sorted(s for s in sessions_seen if not self.buffer.has_ended(s))
            if sessions_seen and not missing:
                break
            if not sessions_seen:
                if now - began > cfg.start_wait_s:
                    self.report.unfinished.append(
                        f"no session spoke in room {cfg.room} within {cfg.start_wait_s:.0f} s")
                    log.warning("giving up: nobody spoke", room=cfg.room,
                                waited_s=cfg.start_wait_s)
                    break
                continue
            if missing != awaited:
                awaited = missing
                log.info("room quiet; waiting for the end of sessions on the speech stream",
                         sessions=missing)
            bound = cfg.end_wait_s + max(lengths.get(s, 0.0) for s in missing)
            if now - quiet_since > bound:
                await self._give_up(missing, now - quiet_since)
                break
        stop.set()
        self._wake.set()

    async def _give_up(self, sessions: list[str], waited_s: float) -> None:
        """Record (and log) where the end of each of ``sessions`` stopped."""
        for session in sessions:
            try:
                trace = await trace_end(self.r, self.keys, self.config.room, session,
                                        self.config.lang)
                why = trace.describe()
            except (RedisError, OSError) as exc:
                why = f"session {session}: no end marker (its streams could not be read: {exc})"
            why += f"; waited {waited_s:.0f} s after the room fell quiet"
            self.report.unfinished.append(why)
            log.warning("giving up on a session's end", session=session, why=why)

    async def _play(self, stop: asyncio.Event) -> None:
        missing_seen = 0
        while not stop.is_set() and not self._stopping:
            now = clock.now()
            piece = self.buffer.pop(now)
            if self.buffer.stats.missing > missing_seen:
                count_outcome("missing", self.config.lang, self.buffer.stats.missing - missing_seen)
                missing_seen = self.buffer.stats.missing
            if piece is None:
                wake_at = self.buffer.next_wakeup(now)
                timeout = 0.5 if wake_at is None else max(wake_at - now, 0.001)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                continue
            await self._play_piece(piece)

    async def _play_piece(self, piece: Piece) -> None:
        entry = piece.item
        speech: Speech = entry.event
        set_origin = getattr(self.sink, "set_origin", None)
        if set_origin is not None:
            set_origin(await self._session_start(speech))
        self._playing = True
        try:
            started = await self.sink.play(speech.pcm, speech.rate, speech.capture_start)
        finally:
            self._playing = False
        assert self.report.latency is not None
        self.report.latency.record("available", speech.capture_end, entry.read_at)
        self.report.latency.record("playback", speech.capture_end, started)
        if speech.part == 0:
            self.report.latency.record("first", speech.capture_end, started)
        count_outcome("played", self.config.lang)
        self.report.played.append(Played(
            session=speech.session, seq=speech.seq, part=speech.part, speaker=speech.speaker,
            text=speech.text, entry_id=entry.entry_id, capture_start=speech.capture_start,
            capture_end=speech.capture_end, available=entry.read_at, started=started,
            duration=speech.samples / speech.rate,
        ))

    async def _session_start(self, speech: Speech) -> float:
        """When the speaker's session started (the WAV timeline origin), from the registry."""
        if speech.session not in self._origins:
            try:
                info = await self.registry.session(self.config.room, speech.session)
            except (RedisError, OSError) as exc:  # Redis restarting: the piece's own start
                log.warning("session start unknown", session=speech.session, error=str(exc))
                info = None
            start = speech.capture_start if info is None or not info.started else min(
                info.started, speech.capture_start)
            self._origins[speech.session] = start
        return self._origins[speech.session]


def _length(info: SessionInfo) -> float:
    """How long the session spoke (0 while it is active or when its times are unknown)."""
    if info.ended and info.started and info.ended > info.started:
        return info.ended - info.started
    return 0.0
