"""Retention of ended sessions: what a session leaves on the bus is gone one window after it.

Streams are trimmed as they are written (``XADD MINID ~ now - retention``), but a session's
streams stop being written when it ends, so trimming alone would keep every ended session's
audio, transcripts and translations for ever. Each worker therefore sweeps, every so often,
the sessions that ended more than ``retention_s`` ago:

* **its own input streams** of such a session are deleted, with its watermark and dedup
  fields in the room's progress hash; its ``fin`` field is set, so that no worker of the
  stage takes the (now missing) stream again;
* one more window later (``2 * retention_s`` after the end) the session is **forgotten**: its
  registry entries (``sessions``, ``status``, ``alive``) and every stage's ``fin`` field go.
  The gap lets every stage, whichever of them runs, find the session and sweep its inputs.

Every step is idempotent, and each session is swept by one script (bus/lua/sweep_session.lua)
that does nothing once the session is forgotten, so any number of workers may sweep at once. Room-wide streams
(one per room and language) keep at most one window of entries as they are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus import clock
from bus.ids import InvalidId, check_lang
from bus.keys import Keys, Partition
from bus.registry import SessionInfo
from bus.scripts import Scripts
from bus.text import as_text


@dataclass(frozen=True)
class ProgressField:
    """One field of a room's progress hash, parsed: ``wm|stage|family:session[:lang]``,
    ``fin|...`` the same, or ``out|stage|<output key>|session``."""

    name: str
    kind: str
    stage: str
    session: str
    lang: str | None = None

    @classmethod
    def parse(cls, name: str) -> ProgressField | None:
        parts = name.split("|")
        if len(parts) == 3 and parts[0] in ("wm", "fin"):
            where = parts[2].split(":")
            if len(where) in (2, 3):
                lang = where[2] if len(where) == 3 else None
                return cls(name, parts[0], parts[1], where[1], lang)
        elif len(parts) == 4 and parts[0] == "out":
            return cls(name, "out", parts[1], parts[3])
        return None


def ended_at(info: SessionInfo) -> float:
    """When a session ended (a session ended by the janitor has only its last heartbeat)."""
    return info.ended or info.last_seen or info.started


class RetentionSweeper:
    """Sweeps one stage's inputs of expired sessions (see the module docstring)."""

    def __init__(self, client: Any, keys: Keys, *, stage: str, family: str, per_lang: bool,
                 retention_s: float, scripts: Scripts | None = None) -> None:
        self.r = client
        self.scripts = scripts or Scripts(client)
        self.keys = keys
        self.stage = stage
        self.family = family
        self.per_lang = per_lang
        self.retention_s = retention_s

    async def sweep(self, room: str, sessions: list[SessionInfo], targets: list[str],
                    busy: set[Partition], now: float | None = None) -> tuple[set[Partition], set[str]]:
        """Sweep one room. Returns (partitions of this stage now finished and deleted,
        sessions forgotten). ``busy``: partitions this worker owns (left alone)."""
        if self.retention_s <= 0:
            return set(), set()
        now = clock.now() if now is None else now
        expired = {s.session: s for s in sessions
                   if not s.active and ended_at(s) < now - self.retention_s}
        if not expired:
            return set(), set()
        progress = self.keys.progress(room)
        # (a field name that is not UTF-8, written by hand, is no field of ours: never matched)
        fields = [f for f in [ProgressField.parse(as_text(name, "replace"))
                              async for name, _value in self.r.hscan_iter(progress)]
                  if f is not None and f.session in expired]
        forgotten = {sid for sid, info in expired.items()
                     if ended_at(info) < now - 2 * self.retention_s}
        swept: set[Partition] = set()
        gone: set[str] = set()
        registry = [self.keys.status(room), self.keys.alive(room)]
        for sid in expired:
            mine = [f for f in fields if f.session == sid and f.stage == self.stage]
            parts = self._partitions(room, sid, mine, targets) - busy
            fins = [self.keys.finished_field(self.stage, self.family, p) for p in parts]
            drop = [f.name for f in mine if f.kind != "fin"]
            # one script per session: it does nothing once another worker forgot the session
            done = await self.scripts.sweep_session(
                keys=[progress, *registry, *(self.keys.stream(self.family, p) for p in parts)],
                args=[sid, "1" if sid in forgotten else "0", len(fins), *fins, *drop])
            if int(done):
                swept |= parts
            if sid in forgotten or not int(done):  # (0: forgotten by another worker)
                await self.r.hdel(self.keys.sessions(room), sid)
                gone.add(sid)
        forgotten = gone
        return swept, forgotten

    def _partitions(self, room: str, session: str, fields: list[ProgressField],
                    targets: list[str]) -> set[Partition]:
        if not self.per_lang:
            return {Partition(room, session)}
        # (a field with no valid language code, written by hand, names no stream)
        langs = {f.lang for f in fields if f.lang and _is_lang(f.lang)} | set(targets)
        return {Partition(room, session, lang) for lang in langs}


def _is_lang(value: str) -> bool:
    try:
        check_lang(value)
    except InvalidId:
        return False
    return True
