"""Rooms, their target languages and their sessions: registration and discovery.

A room is created (explicitly or by its first session) and holds the set of
target languages that operators configured or listeners asked for.  A capture
agent registers its session (room, id, source language, speaker), keeps it
alive with heartbeats and ends it; every change is announced on a global
stream so workers pick sessions up without restarts.  A session whose
heartbeats stop is ended by the workers' janitor (see expire_stale).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from bus.events import ControlEvent
from bus.ids import check_id, check_lang
from bus.keys import BELL_MAXLEN, Keys, Partition
from bus.scripts import Scripts

ANNOUNCE_MAXLEN = 10_000
PINNED = math.inf


@dataclass
class SessionInfo:
    room: str
    session: str
    source_lang: str
    speaker: str = ""
    status: str = "active"
    started: float = 0.0
    ended: float = 0.0
    reason: str = ""
    last_seen: float = 0.0

    @property
    def active(self) -> bool:
        return self.status == "active"


class Registry:
    def __init__(self, client: Any, keys: Keys, *, cluster: bool = False) -> None:
        self.r = client
        self.keys = keys
        self.cluster = cluster
        self._scripts = Scripts(client)

    # -- rooms -----------------------------------------------------------------
    async def create_room(self, room: str, targets: list[str] | tuple[str, ...] = ()) -> None:
        """Create a room (idempotent) with pinned target languages."""
        check_id(room, "room id")
        langs = [check_lang(lang) for lang in targets]
        pipe = self.r.pipeline(transaction=False)
        pipe.hsetnx(self.keys.room_meta(room), "created", repr(time.time()))
        if langs:
            pipe.zadd(self.keys.targets(room), {lang: PINNED for lang in langs})
        await pipe.execute()
        await self.r.sadd(self.keys.rooms, room)
        if langs:
            await self._announce(room, "-", "targets", langs=",".join(langs))

    async def add_listener(self, room: str, lang: str, ttl_s: float = 60.0) -> None:
        """A listener asked for ``lang`` in ``room``: keep it a target for ``ttl_s`` more seconds."""
        check_lang(lang)
        key = self.keys.targets(room)
        until = time.time() + ttl_s
        added = await self.r.zadd(key, {lang: until}, gt=True, ch=True)
        if added:
            await self._announce(room, "-", "targets", langs=lang)

    async def room_targets(self, room: str, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        raw = await self.r.zrangebyscore(self.keys.targets(room), now, "+inf")
        return sorted(_s(x) for x in raw)

    async def rooms(self) -> list[str]:
        return sorted(_s(x) for x in await self.r.smembers(self.keys.rooms))

    async def room_exists(self, room: str) -> bool:
        check_id(room, "room id")
        return bool(await self.r.sismember(self.keys.rooms, room))

    # -- sessions ----------------------------------------------------------------
    async def register_session(
        self, room: str, session: str, source_lang: str, speaker: str = ""
    ) -> SessionInfo:
        """Register an active session and announce it; creates the room if needed."""
        check_id(room, "room id")
        check_id(session, "session id")
        check_lang(source_lang, allow_auto=True)
        now = time.time()
        info = SessionInfo(room, session, source_lang, speaker, "active", now, last_seen=now)
        record = {"source_lang": source_lang, "speaker": speaker, "started": now}
        pipe = self.r.pipeline(transaction=not self.cluster)
        pipe.hsetnx(self.keys.room_meta(room), "created", repr(now))
        pipe.hset(self.keys.sessions(room), session, json.dumps(record))
        # the heartbeat before the status: on a cluster the pipeline is no transaction, and a
        # janitor (bus/lua/expire_session.lua) finding the session active with no fresh
        # heartbeat in between would end it as it starts
        pipe.hset(self.keys.alive(room), session, int(now * 1000))
        pipe.hset(self.keys.status(room), session, "active")
        await pipe.execute()
        try:
            await self.r.sadd(self.keys.rooms, room)
            await self._announce(room, session, "start", source_lang=source_lang, speaker=speaker)
        except Exception:
            await self.remove_session(room, session)
            raise
        return info

    async def heartbeat(self, room: str, session: str) -> None:
        await self.r.hset(self.keys.alive(room), session, int(time.time() * 1000))

    async def end_session(
        self, room: str, session: str, reason: str = "stopped", marker_stream: str | None = None,
        marker: ControlEvent | None = None,
    ) -> None:
        """Mark a session ended; optionally append the end marker to its stream atomically."""
        raw = await self.r.hget(self.keys.sessions(room), session)
        record = json.loads(raw) if raw else {}
        record.update(ended=time.time(), reason=reason)
        pipe = self.r.pipeline(transaction=not self.cluster)
        if marker_stream is not None and marker is not None:
            pipe.xadd(marker_stream, marker.to_fields())
            bell = self.keys.bell_of(marker_stream)
            if bell is not None:
                pipe.xadd(bell, {"keys": marker_stream}, maxlen=BELL_MAXLEN, approximate=True)
        pipe.hset(self.keys.sessions(room), session, json.dumps(record))
        pipe.hset(self.keys.status(room), session, "ended")
        await pipe.execute()
        await self._announce(room, session, "end", reason=reason)

    async def remove_session(self, room: str, session: str) -> None:
        """Undo a registration (used when a capture agent fails right after registering)."""
        pipe = self.r.pipeline(transaction=not self.cluster)
        pipe.hdel(self.keys.sessions(room), session)
        pipe.hdel(self.keys.status(room), session)
        pipe.hdel(self.keys.alive(room), session)
        await pipe.execute()

    async def sessions(self, room: str) -> list[SessionInfo]:
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.sessions(room))
        pipe.hgetall(self.keys.status(room))
        pipe.hgetall(self.keys.alive(room))
        records, status, alive = await pipe.execute()
        return _sessions_of(room, records, status, alive)

    async def snapshot(self, rooms: list[str], now: float | None = None,
                       ) -> dict[str, tuple[list[str], list[SessionInfo]]]:
        """The target languages and sessions of each of ``rooms``, in one round trip."""
        now = time.time() if now is None else now
        pipe = self.r.pipeline(transaction=False)
        for room in rooms:
            pipe.zrangebyscore(self.keys.targets(room), now, "+inf")
            pipe.hgetall(self.keys.sessions(room))
            pipe.hgetall(self.keys.status(room))
            pipe.hgetall(self.keys.alive(room))
        replies = await pipe.execute() if rooms else []
        out = {}
        for i, room in enumerate(rooms):
            targets, records, status, alive = replies[4 * i:4 * i + 4]
            out[room] = (sorted(_s(x) for x in targets),
                         _sessions_of(room, records, status, alive))
        return out

    async def session(self, room: str, session: str) -> SessionInfo | None:
        for info in await self.sessions(room):
            if info.session == session:
                return info
        return None

    async def expire_stale(
        self, info: SessionInfo, timeout_s: float, audio_stream: str, now: float | None = None
    ) -> bool:
        """End ``info`` if its heartbeats stopped more than ``timeout_s`` ago (atomic, once)."""
        now = time.time() if now is None else now
        marker = ControlEvent(
            room=info.room, session=info.session, seq=0, capture_start=now, capture_end=now,
            action="end", reason="timeout", emitted=now,
        )
        args: list[Any] = [info.session, int((now - timeout_s) * 1000)]
        for k, v in marker.to_fields().items():
            args += [k, v]
        done = await self._scripts.expire_session(
            keys=[self.keys.status(info.room), self.keys.alive(info.room), audio_stream,
                  self.keys.bell(info.room, "audio")], args=args
        )
        if done:
            await self._announce(info.room, info.session, "end", reason="timeout")
        return bool(done)

    async def _announce(self, room: str, session: str, action: str, **fields: str) -> None:
        now = time.time()
        event = ControlEvent(
            room=room, session=session if session != "-" else "room", seq=0, capture_start=now,
            capture_end=now, emitted=now, action=action, **fields,  # type: ignore[arg-type]
        )
        await self.r.xadd(self.keys.announce, event.to_fields(), maxlen=ANNOUNCE_MAXLEN,
                          approximate=True)


def _sessions_of(room: str, records: dict[Any, Any], status: dict[Any, Any],
                 alive: dict[Any, Any]) -> list[SessionInfo]:
    out = []
    for raw_sid, raw in records.items():
        sid = _s(raw_sid)
        try:
            rec = json.loads(raw)
        except (ValueError, TypeError):
            continue
        out.append(
            SessionInfo(
                room=room,
                session=sid,
                source_lang=rec.get("source_lang", "auto"),
                speaker=rec.get("speaker", ""),
                status=_s(status.get(raw_sid, b"ended")),
                started=float(rec.get("started", 0.0)),
                ended=float(rec.get("ended", 0.0)),
                reason=rec.get("reason", ""),
                last_seen=int(alive.get(raw_sid, 0)) / 1000.0,
            )
        )
    return sorted(out, key=lambda s: (s.started, s.session))


def partitions_for(info: SessionInfo, targets: list[str], per_lang: bool) -> list[Partition]:
    """The partitions a stage reading a per-session (or per-session-and-language) family has."""
    if not per_lang:
        return [Partition(info.room, info.session)]
    return [Partition(info.room, info.session, lang) for lang in targets]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["Registry", "SessionInfo", "asdict", "partitions_for"]
