"""Rooms, their target languages and their sessions: registration and discovery.

A room is created (explicitly or by its first session) and holds the set of
target languages that operators configured or listeners asked for.  A capture
agent registers its session (room, id, source language, speaker), keeps it
alive with heartbeats and ends it; every change is announced on a global
stream so workers pick sessions up without restarts.  A session whose
heartbeats stop is ended by the workers' janitor (see expire_silent).

Every read parses each entry on its own: one that cannot be read (written by hand with
redis-cli, or by a broken client) is skipped, logged once per process and counted in
``s2st_registry_bad_entries_total{kind}``, and the good entries are returned as usual, so bad
data never stops discovery, the janitor, the retention sweep, players or the status tools.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from bus import clock
from bus.events import ControlEvent
from bus.ids import InvalidId, check_id, check_lang
from bus.keys import BELL_MAXLEN, Keys, Partition
from bus.logs import get_logger
from bus.metrics import REGISTRY_BAD_ENTRIES
from bus.scripts import Scripts
from bus.text import as_text_or_none

log = get_logger("s2st.registry")

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
        pipe.hsetnx(self.keys.room_meta(room), "created", repr(clock.now()))
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
        until = clock.now() + ttl_s
        added = await self.r.zadd(key, {lang: until}, gt=True, ch=True)
        if added:
            await self._announce(room, "-", "targets", langs=lang)

    async def room_targets(self, room: str, now: float | None = None) -> list[str]:
        now = clock.now() if now is None else now
        key = self.keys.targets(room)
        return _targets_of(key, await self.r.zrangebyscore(key, now, "+inf"))

    async def rooms(self) -> list[str]:
        """The registered rooms; a member that is no valid room id (added by hand) is skipped."""
        rooms = []
        for raw in await self.r.smembers(self.keys.rooms):
            room = as_text_or_none(raw)
            if room is None or not _valid(check_id, room):
                _bad("room", self.keys.rooms, raw, None, "not a valid room id")
                continue
            rooms.append(room)
        return sorted(rooms)

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
        now = clock.now()
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
        await self.r.hset(self.keys.alive(room), session, int(clock.now() * 1000))

    async def end_session(
        self, room: str, session: str, reason: str = "stopped", marker_stream: str | None = None,
        marker: ControlEvent | None = None,
    ) -> None:
        """Mark a session ended; optionally append the end marker to its stream atomically."""
        record = session_record(await self.r.hget(self.keys.sessions(room), session))
        record.update(ended=clock.now(), reason=reason)
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
        return _sessions_of(self.keys, room, records, status, alive)

    async def snapshot(self, rooms: list[str], now: float | None = None,
                       ) -> dict[str, tuple[list[str], list[SessionInfo]]]:
        """The target languages and sessions of each of ``rooms``, in one round trip."""
        now = clock.now() if now is None else now
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
            out[room] = (_targets_of(self.keys.targets(room), targets),
                         _sessions_of(self.keys, room, records, status, alive))
        return out

    async def session(self, room: str, session: str) -> SessionInfo | None:
        for info in await self.sessions(room):
            if info.session == session:
                return info
        return None

    async def expire_silent(
        self, snapshot: dict[str, tuple[list[str], list[SessionInfo]]], root_family: str,
        timeout_s: float, now: float | None = None,
    ) -> list[SessionInfo]:
        """End the active sessions of ``snapshot`` (as :meth:`snapshot` returns it) whose
        heartbeats stopped more than ``timeout_s`` ago: each gets its end marker on its stream
        of ``root_family`` (the family the session's source writes). The sessions this call
        ended (each is ended once, whoever calls)."""
        now = clock.now() if now is None else now
        ended = []
        for room, (_targets, infos) in snapshot.items():
            for info in infos:
                if info.active and now - info.last_seen > timeout_s:
                    stream = self.keys.stream(root_family, Partition(room, info.session))
                    if await self.expire_stale(info, timeout_s, stream, now):
                        ended.append(info)
        return ended

    async def expire_stale(
        self, info: SessionInfo, timeout_s: float, source_stream: str, now: float | None = None
    ) -> bool:
        """End ``info`` if its heartbeats stopped more than ``timeout_s`` ago (atomic, once):
        its end marker goes to ``source_stream`` (the stream its source writes), whose bell is
        rung."""
        now = clock.now() if now is None else now
        bell = self.keys.bell_of(source_stream)
        if bell is None:
            raise ValueError(f"not a session stream: {source_stream!r}")
        marker = ControlEvent(
            room=info.room, session=info.session, seq=0, capture_start=now, capture_end=now,
            action="end", reason="timeout", emitted=now,
        )
        # the script compares the heartbeat with Redis's own clock (TIME) minus the timeout;
        # with ours only if TIME is refused (bus/lua/expire_session.lua)
        args: list[Any] = [info.session, int((now - timeout_s) * 1000), int(timeout_s * 1000)]
        for k, v in marker.to_fields().items():
            args += [k, v]
        done = await self._scripts.expire_session(
            keys=[self.keys.status(info.room), self.keys.alive(info.room), source_stream, bell],
            args=args,
        )
        if done:
            await self._announce(info.room, info.session, "end", reason="timeout")
        return bool(done)

    async def _announce(self, room: str, session: str, action: str, **fields: str) -> None:
        now = clock.now()
        event = ControlEvent(
            room=room, session=session if session != "-" else "room", seq=0, capture_start=now,
            capture_end=now, emitted=now, action=action, **fields,  # type: ignore[arg-type]
        )
        await self.r.xadd(self.keys.announce, event.to_fields(), maxlen=ANNOUNCE_MAXLEN,
                          approximate=True)


_STATUSES = frozenset({"active", "ended"})
_REPORTED: set[tuple[str, str, str]] = set()  # bad entries already logged by this process
_REPORTED_MAX = 10_000


def session_record(raw: Any) -> dict[str, Any]:
    """A session's stored record as a dict: ``{}`` for none, or for one that is not a JSON
    object (a record overwritten by hand), so that whoever adds to it still can."""
    try:
        record = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _sessions_of(keys: Keys, room: str, records: dict[Any, Any], status: dict[Any, Any],
                 alive: dict[Any, Any]) -> list[SessionInfo]:
    out = []
    for raw_sid, raw in records.items():
        info = _session_of(keys, room, raw_sid, raw, status.get(raw_sid), alive.get(raw_sid))
        if info is not None:
            out.append(info)
    return sorted(out, key=lambda s: (s.started, s.session))


def _session_of(keys: Keys, room: str, raw_sid: Any, raw: Any, raw_status: Any,
                raw_alive: Any) -> SessionInfo | None:
    """One session from its three registry entries, or None (logged and counted once) when
    one of them cannot be read: written by hand (``redis-cli HSET``) or by a broken client.
    Such a session is left out, as if it were not registered, until it is fixed."""
    sid = as_text_or_none(raw_sid)
    if sid is None or not _valid(check_id, sid):
        _bad("session_id", keys.sessions(room), raw_sid, raw, "not a valid session id")
        return None
    try:
        rec = json.loads(raw)
    except (ValueError, TypeError):  # (not UTF-8 is a ValueError too)
        rec = None
    if not isinstance(rec, dict):
        _bad("record", keys.sessions(room), raw_sid, raw, "not a JSON object")
        return None
    try:
        source_lang = check_lang(_text_field(rec, "source_lang", "auto"), allow_auto=True)
        speaker = _text_field(rec, "speaker", "")
        reason = _text_field(rec, "reason", "")
        started = _number(rec.get("started", 0.0), "started")
        ended = _number(rec.get("ended", 0.0), "ended")
    except ValueError as exc:  # (InvalidId is one)
        _bad("record", keys.sessions(room), raw_sid, raw, str(exc))
        return None
    state = "ended" if raw_status is None else as_text_or_none(raw_status)
    if state not in _STATUSES:
        _bad("status", keys.status(room), raw_sid, raw_status, "expected active or ended")
        return None
    last_seen = 0.0
    if raw_alive is not None:
        try:
            last_seen = _number(as_text_or_none(raw_alive), "alive") / 1000.0
        except ValueError as exc:
            _bad("alive", keys.alive(room), raw_sid, raw_alive, str(exc))
            return None
    return SessionInfo(room=room, session=sid, source_lang=source_lang, speaker=speaker,
                       status=state, started=started, ended=ended, reason=reason,
                       last_seen=last_seen)


def _targets_of(key: str, raw: list[Any]) -> list[str]:
    """The valid language codes of a targets sorted set; others (added by hand) skipped."""
    out = []
    for member in raw:
        lang = as_text_or_none(member)
        if lang is None or not _valid(check_lang, lang):
            _bad("target", key, member, None, "not a valid language code")
            continue
        out.append(lang)
    return sorted(out)


def _bad(kind: str, key: str, field: Any, value: Any, why: str) -> None:
    """A registry entry that cannot be read is skipped by every reader. It is logged and
    counted once per process for each key, field and value, not at every read (workers read
    the registry every 500 ms)."""
    seen = (key, _shown(field), _shown(value))
    if seen in _REPORTED:
        return
    if len(_REPORTED) >= _REPORTED_MAX:
        _REPORTED.clear()
    _REPORTED.add(seen)
    REGISTRY_BAD_ENTRIES.labels(kind).inc()
    log.warning("bad registry entry skipped", kind=kind, key=key, field=seen[1],
                value=seen[2], reason=why)


def _valid(check: Any, value: str) -> bool:
    try:
        check(value)
    except InvalidId:
        return False
    return True


def _text_field(record: dict[str, Any], name: str, default: str) -> str:
    value = record.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a string: {value!r}")
    return value


def _number(value: Any, name: str) -> float:
    """A finite number (or its text), else ValueError."""
    if value is None or isinstance(value, bool):
        raise ValueError(f"{name} is not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} is not a finite number: {value!r}")
    return number


def _shown(value: Any) -> str:
    """How a bad value appears in the log line (cut to 200 characters)."""
    if value is None:
        return ""
    text = value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)
    return text if len(text) <= 200 else text[:200] + "..."


def partitions_for(info: SessionInfo, targets: list[str], per_lang: bool) -> list[Partition]:
    """The partitions a stage reading a per-session (or per-session-and-language) family has."""
    if not per_lang:
        return [Partition(info.room, info.session)]
    return [Partition(info.room, info.session, lang) for lang in targets]


__all__ = ["Registry", "SessionInfo", "asdict", "partitions_for"]
