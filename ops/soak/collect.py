"""Reading what the stages wrote, as light records (:class:`~ops.soak.accounting.Rec`).

:class:`StreamTail` follows the rooms' speech streams and dead-letter streams for the whole
run (plain ``XREAD``, from the first entry, resuming after the last one it saw whenever Redis
goes away and comes back), keeping each entry's plain fields and dropping its PCM. The
per-session streams (audio, transcript, translation) are read with ``XRANGE`` when the
session is over (:func:`read_stream`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.exceptions import RedisError

from bus.deadletters import dead_entry
from bus.text import as_text
from ops.soak.accounting import Rec, parse_entry

_PAGE = 500
RETRY_S = 0.5  # after a failed read (Redis restarting): wait this long, then read again


async def read_stream(client: Any, key: str) -> list[Rec]:
    """Every session event of ``key``, in stream order (undecodable entries left out)."""
    out: list[Rec] = []
    start = "-"
    while True:
        batch = await client.xrange(key, start, "+", count=_PAGE)
        for raw_id, fields in batch:
            rec = parse_entry(raw_id, fields)
            if rec is not None:
                out.append(rec)
        if len(batch) < _PAGE:
            return out
        start = "(" + as_text(batch[-1][0])


class StreamTail:
    """Follows room-wide streams (speech, dead letters) from their first entry."""

    def __init__(self, client: Any, speech: dict[str, tuple[str, str]],
                 deadletters: dict[str, str]) -> None:
        """``speech``: stream key -> (room, lang); ``deadletters``: stream key -> room."""
        self.client = client
        self.speech = speech
        self.deadletters = deadletters
        self.last: dict[str, str] = dict.fromkeys([*speech, *deadletters], "0-0")
        # (room, lang) -> session -> records in stream order
        self.recs: dict[tuple[str, str], dict[str, list[Rec]]] = {v: {} for v in speech.values()}
        self.dead: list[dict[str, Any]] = []
        self.errors = 0
        self.read_at = 0.0  # wall clock of the last successful read
        self.closing = False

    def session(self, room: str, lang: str, session: str) -> list[Rec]:
        return self.recs.get((room, lang), {}).get(session, [])

    def end_of(self, room: str, lang: str, session: str) -> Rec | None:
        """The session's end marker in the room's speech stream, if it came."""
        for rec in reversed(self.session(room, lang, session)):
            if rec.is_end:
                return rec
        return None

    def speech_ms(self) -> list[int]:
        """When each speech piece was written (Redis ms), all rooms and languages."""
        return sorted(r.ms for by in self.recs.values() for recs in by.values() for r in recs
                      if r.type == "speech")

    async def run(self) -> None:
        while not self.closing:
            await self.poll(block_ms=500)

    async def poll(self, block_ms: int | None = None) -> int:
        """One read of every followed stream; the number of entries it brought."""
        try:
            reply = await self.client.xread(self.last, count=200, block=block_ms)
        except (RedisError, OSError):
            self.errors += 1
            await asyncio.sleep(RETRY_S)
            return 0
        self.read_at = time.time()
        n = 0
        for raw_key, entries in reply or []:
            key = as_text(raw_key)
            for raw_id, fields in entries:
                n += 1
                self.last[key] = as_text(raw_id)
                if key in self.speech:
                    rec = parse_entry(raw_id, fields)
                    if rec is not None:
                        self.recs[self.speech[key]].setdefault(rec.session, []).append(rec)
                else:
                    dead = dead_entry(raw_id, fields)
                    if dead is not None:
                        dead["room"] = self.deadletters[key]
                        self.dead.append(dead)
        return n

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Read until nothing new comes (at most ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.poll(block_ms=None) == 0 and self.errors == 0:
                return
            self.errors = 0
