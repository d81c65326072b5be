"""Reading a whole session back from its streams (for `s2st replay` and `s2st export`).

Entries are read oldest first in batches with ``XRANGE``; entries of the room-wide speech
streams are filtered by their ``session`` field before they are decoded (their PCM is only
unpacked for the session asked for).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bus.events import ControlEvent, Event, MalformedEvent, decode_event
from bus.keys import Keys
from bus.text import as_text
from bus.topology import Family
from pipeline import PIPELINE

BATCH = 500


@dataclass(frozen=True)
class Entry:
    id: str
    event: Event


def parse_entry_id(text: str) -> tuple[int, int]:
    """``1795505490169-0`` (or ``1795505490169``) as a comparable pair; ValueError if invalid."""
    ms, sep, seq = text.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()) or (sep and not seq):
        raise ValueError(f"invalid stream entry id {text!r}: expected e.g. 1795505490169-0")
    return int(ms), int(seq or 0)


async def entries(client: Any, key: str, start: str = "-",
                  session: str | None = None) -> AsyncIterator[Entry]:
    """The decodable events of ``key`` from ``start`` on (of ``session`` only, if given)."""
    want = session.encode() if session is not None else None
    low = start
    while True:
        batch = await client.xrange(key, low, "+", count=BATCH)
        for raw_id, fields in batch:
            if want is not None and fields.get(b"session") != want:
                continue
            try:
                event = decode_event(fields)
            except MalformedEvent:
                continue
            yield Entry(as_text(raw_id), event)
        if len(batch) < BATCH:
            return
        low = "(" + as_text(batch[-1][0])


async def read_all(client: Any, key: str, start: str = "-",
                   session: str | None = None) -> list[Entry]:
    return [e async for e in entries(client, key, start, session)]


async def family_langs(client: Any, keys: Keys, family: Family, room: str,
                       session: str | None = None) -> list[str]:
    """The languages a per-language family has a stream in: the session's (a per-session
    family) or the room's (a room-wide one)."""
    pattern = family.key(keys, room, session, "xx")[:-2] + "*"
    found = set()
    async for raw in client.scan_iter(match=pattern, count=500, _type="STREAM"):
        found.add(as_text(raw).rsplit(":", 1)[1])
    return sorted(found)


# the pipeline's per-language families: the session's (translations) and the room's (speech)
_SESSION_LANGS = next(f for f in PIPELINE if f.per_session and f.per_lang)
_ROOM_LANGS = next(f for f in PIPELINE if f.room_wide)


async def translation_langs(client: Any, keys: Keys, room: str, session: str) -> list[str]:
    """The languages the session has a translation stream in."""
    return await family_langs(client, keys, _SESSION_LANGS, room, session)


async def speech_langs(client: Any, keys: Keys, room: str) -> list[str]:
    """The languages the room has a speech stream in."""
    return await family_langs(client, keys, _ROOM_LANGS, room)


def is_end(event: Event) -> bool:
    return isinstance(event, ControlEvent) and event.action == "end"
