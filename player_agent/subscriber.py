"""Reading a room's streams with plain XREAD from a position.

Why not a consumer group: a group hands each entry to *one* of its consumers, but every
listener of a language must hear everything, and a listener must leave nothing behind on
the server when it goes away.  So each listener reads with XREAD from its own position,
kept in memory: a late joiner starts at the stream's current end (resolved to a concrete
entry id first, so nothing written between two reads is missed), ``--from`` starts
anywhere in the retained history.

Entries that do not decode are logged, counted and skipped: one bad entry never stops a
listener.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bus import clock
from bus.events import Event, MalformedEvent, decode_event
from bus.logs import get_logger
from bus.text import as_text

log = get_logger("player.subscriber")

LIVE = "$"
_ENTRY_ID = re.compile(r"^\d+-\d+$")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_position(text: str, now: float | None = None) -> str:
    """Turn a ``--from`` value into a stream position (an exclusive XREAD id).

    Accepts ``$``/``live`` (the current end), ``0``/``start`` (everything retained), an
    entry id ``1700000000000-0``, a time ago ``90s``/``5m``/``1h``, epoch seconds
    ``1700000000.5`` or an ISO 8601 time ``2026-11-24T06:40:00Z``.
    """
    value = text.strip()
    if value in (LIVE, "live"):
        return LIVE
    if value in ("0", "start", "beginning"):
        return "0-0"
    if _ENTRY_ID.fullmatch(value):
        return value
    now = clock.now() if now is None else now
    if m := _RELATIVE.fullmatch(value):
        return _id_before(now - float(m.group(1)) * _UNITS[m.group(2)])
    try:
        epoch = float(value)
    except ValueError:
        epoch = None
    if epoch is not None:
        if not 1e9 <= epoch <= 1e11:
            raise ValueError(f"--from {text!r}: epoch seconds expected (e.g. {int(now)})")
        return _id_before(epoch)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--from {text!r}: expected an entry id (1700000000000-0), a time ago (90s, 5m), "
            "epoch seconds, an ISO time (2026-11-24T06:40:00Z), 'start' or 'live'"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # a naive time is local time
    return _id_before(when.timestamp())


def _id_before(epoch: float) -> str:
    """The position just before the first entry written at or after ``epoch``."""
    ms = max(int(epoch * 1000) - 1, 0)
    return f"{ms}-18446744073709551615"


@dataclass(frozen=True)
class Entry:
    stream: str
    entry_id: str
    event: Event
    read_at: float  # wall-clock time it was read: when the piece became available here


class StreamReader:
    """XREAD over a set of streams, each from its own position; more can be added later."""

    def __init__(self, client: Any, *, block_ms: int = 500, count: int = 100) -> None:
        self.r = client
        self.block_ms = block_ms
        self.count = count
        self.positions: dict[str, str] = {}
        self.malformed = 0

    async def add(self, stream: str, position: str = LIVE) -> None:
        """Follow ``stream`` from ``position``; ``$`` is resolved to the current last id."""
        if stream in self.positions:
            return
        if position == LIVE:
            position = await self.last_id(stream)
        self.positions[stream] = position

    def remove(self, stream: str) -> None:
        self.positions.pop(stream, None)

    async def last_id(self, stream: str) -> str:
        newest = await self.r.xrevrange(stream, "+", "-", count=1)
        return as_text(newest[0][0]) if newest else "0-0"

    async def read(self) -> list[Entry]:
        """One XREAD (blocking up to ``block_ms``); decoded entries in stream order."""
        if not self.positions:
            return []
        reply = await self.r.xread(dict(self.positions), count=self.count, block=self.block_ms)
        now = clock.now()
        out: list[Entry] = []
        for raw_stream, entries in _items(reply):
            stream = as_text(raw_stream)
            for raw_id, fields in entries:
                entry_id = as_text(raw_id)
                self.positions[stream] = entry_id
                try:
                    event = decode_event(fields)
                except MalformedEvent as exc:
                    self.malformed += 1
                    log.warning("malformed entry skipped", stream=stream, id=entry_id,
                                error=str(exc))
                    continue
                out.append(Entry(stream, entry_id, event, now))
        return out

    async def follow(self) -> AsyncIterator[Entry]:
        while True:
            for entry in await self.read():
                yield entry


def _items(reply: Any) -> list[tuple[Any, Any]]:
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3
        return list(reply.items())
    return [(stream, entries) for stream, entries in reply]
