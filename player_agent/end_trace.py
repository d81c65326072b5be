"""Where a session's end got to: which of its streams carry its end marker.

A session's end travels as a ``control``/``end`` event down its streams: the capture agent
writes it into ``audio:<session>``, each stage forwards it when it has handled everything
before it. A listener waiting for a session's end that never comes wants to know where it
stopped: :func:`trace_end` looks at each stream in pipeline order and, at the first one
without the marker, at the consumer group of the stream before it (the stage that should
have written it: how many entries it still has pending or unread).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus.keys import Keys
from bus.text import as_text
from bus.topology import Family
from pipeline import PIPELINE


def _hop(family: Family) -> tuple[Family, str, str]:
    group = next((r for r in family.readers if r in PIPELINE.workers), "")
    writer = (f"the {family.writer} agent" if family.writer == PIPELINE.source
              else f"the {family.writer} stage")
    return family, group, writer


# (family, the group that reads it, who writes it), in pipeline order (pipeline/__init__.py):
# audio (asr, the capture agent), transcript (mt, the asr stage), translation (tts, the mt
# stage), speech (no group, the tts stage)
HOPS: tuple[tuple[Family, str, str], ...] = tuple(_hop(f) for f in PIPELINE)


@dataclass(frozen=True)
class Hop:
    family: str
    key: str
    writer: str
    reader_group: str
    ended: bool
    exists: bool
    pending: int | None = None  # entries its reader group read and did not acknowledge
    lag: int | None = None  # entries its reader group has not read yet


@dataclass(frozen=True)
class EndTrace:
    session: str
    lang: str
    hops: tuple[Hop, ...]

    @property
    def ended(self) -> bool:
        return all(h.ended for h in self.hops)

    def describe(self) -> str:
        """One line: where the end marker got to and who has not passed it on."""
        reached = [h for h in self.hops if h.ended]
        missing = next((h for h in self.hops if not h.ended), None)
        if missing is None:
            return f"session {self.session}: its end marker reached every stream"
        where = ", ".join(h.family for h in reached) or "no stream"
        text = (f"session {self.session} ({self.lang}): end marker in {where}; "
                f"none in {missing.key}, which {missing.writer} writes")
        before = self.hops[self.hops.index(missing) - 1] if reached else None
        if missing.family == PIPELINE.root.name:
            state = "the stream exists" if missing.exists else "the stream does not exist"
            return f"{text} ({state}: the capture did not end its session)"
        if before is not None and before.pending is not None:
            text += (f" (group {before.reader_group} on {before.family}: "
                     f"{before.pending} pending, {before.lag if before.lag is not None else '?'}"
                     " unread)")
        elif before is not None and before.ended:
            text += f" (no group {before.reader_group} on {before.family}: no worker read it)"
        return text


async def trace_end(client: Any, keys: Keys, room: str, session: str, lang: str) -> EndTrace:
    hops: list[Hop] = []
    for family, group, writer in HOPS:
        key = family.key(keys, room, session, lang if family.per_lang else None)
        # a room-wide stream holds every session's entries: look further back in it
        ended = await has_end_marker(client, key, session, scan=500 if family.room_wide else 5)
        exists = bool(await client.exists(key))
        pending = lag = None
        if group and exists:
            pending, lag = await _group_state(client, key, group)
        hops.append(Hop(family.name, key, writer, group, ended, exists, pending, lag))
    return EndTrace(session, lang, tuple(hops))


async def has_end_marker(client: Any, key: str, session: str, scan: int = 200) -> bool:
    """True if one of the last ``scan`` entries of ``key`` is ``session``'s end marker."""
    want = session.encode()
    for _raw_id, fields in await client.xrevrange(key, "+", "-", count=scan):
        if fields.get(b"session") == want and fields.get(b"type") == b"control" \
                and fields.get(b"action") == b"end":
            return True
    return False


async def _group_state(client: Any, key: str, group: str) -> tuple[int | None, int | None]:
    try:
        groups = await client.xinfo_groups(key)
    except Exception:  # the stream went away meanwhile, an older Redis: no detail
        return None, None
    for info in groups:
        name = info.get("name")
        if as_text(name) == group:
            lag = info.get("lag")
            return int(info.get("pending", 0)), (int(lag) if lag is not None else None)
    return None, None
