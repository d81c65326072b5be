"""`s2st inspect`: one session's streams, readable.

The audio stream summarized (chunks, seconds, utterances, end marker), the last committed
transcripts, translations and speech pieces with their text and sequence numbers, and for
each the latency from the end of the source audio (``emitted - capture_end``) split by the
hops of its trace: the time in each stage (``t_out - t_in``) and on the bus between them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bus.command import run_async
from bus.events import (
    AudioChunk,
    ControlEvent,
    Event,
    MalformedEvent,
    Speech,
    Transcript,
    Translation,
    decode_event,
)
from bus.ids import check_id, check_lang
from bus.keys import Keys
from bus.settings import BusSettings, add_bus_options
from bus.status import _groups
from bus.text import as_text
from pipeline import PIPELINE
from player_agent.latency import percentile

SCAN_BATCH = 200
SCAN_LIMIT = 5000  # entries looked at per stream, from the newest


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "inspect",
        help="a session's streams, readable: audio, transcripts, translations, speech, latency",
        description="Show one session: its audio stream summarized, its last committed "
        "transcripts, translations and speech pieces (text, seq) with the latency of each "
        "from the end of the source audio, split by the hops of its trace.",
    )
    p.add_argument("--room", required=True)
    p.add_argument("--session", required=True)
    p.add_argument("--lang", action="append",
                   help="target language(s) to show (default: every target of the room)")
    p.add_argument("--count", type=int, default=10, help="entries shown per stream (10)")
    add_bus_options(p)
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    room = check_id(args.room, "room id")
    session = check_id(args.session, "session id")
    langs = [check_lang(x) for x in args.lang or []]
    if args.count < 1:
        print("s2st inspect: --count must be at least 1")
        return 2

    async def main(settings: BusSettings) -> int:
        from bus.connection import connect

        client = await connect(settings)
        try:
            text = await inspect_session(client, settings.keys, room, session, langs, args.count)
        finally:
            await client.aclose()
        print(text)
        return 0 if text else 1

    return run_async(args, main)


# -- reading -------------------------------------------------------------------------------


@dataclass
class Entry:
    id: str
    event: Event


async def last_entries(client: Any, key: str, keep: Callable[[Event], bool], n: int) -> list[Entry]:
    """The last ``n`` entries of ``key`` whose event passes ``keep``, oldest first."""
    found: list[Entry] = []
    top, seen = "+", 0
    while len(found) < n and seen < SCAN_LIMIT:
        batch = await client.xrevrange(key, top, "-", count=SCAN_BATCH)
        if not batch:
            break
        for raw_id, fields in batch:
            seen += 1
            try:
                event = decode_event(fields)
            except MalformedEvent:
                continue
            if keep(event):
                found.append(Entry(as_text(raw_id), event))
                if len(found) == n:
                    break
        top = "(" + as_text(batch[-1][0])
    return found[::-1]


async def inspect_session(client: Any, keys: Keys, room: str, session: str, langs: list[str],
                          count: int) -> str:
    from bus.registry import Registry

    registry = Registry(client, keys)
    info = await registry.session(room, session)
    if not langs:
        langs = await registry.room_targets(room) or sorted(
            {as_text(x) for x in await client.zrange(keys.targets(room), 0, -1)})
    lines: list[str] = []
    if info is None:
        lines.append(f"SESSION {room}/{session}: not registered (looking at its streams anyway)")
    else:
        ended = f", ended {_clock(info.ended)} ({info.reason})" if info.ended else ""
        lines.append(f"SESSION {room}/{session}  {info.status}  lang={info.source_lang}  "
                     f"speaker={info.speaker or '-'}  started {_clock(info.started)}{ended}")
    # the pipeline's families along the flow: those of the session first, then, per
    # language, the per-language ones
    for family in PIPELINE:
        if not family.per_lang:
            lines += ["", *await _section(client, family.key(keys, room, session), family.events,
                                          session, None, count)]
    for lang in langs:
        for family in PIPELINE:
            if family.per_lang:
                lines += ["", *await _section(client, family.key(keys, room, session, lang),
                                              family.events, session, lang, count)]
    return "\n".join(lines)


async def _section(client: Any, key: str, events: tuple[str, ...], session: str,
                   lang: str | None, count: int) -> list[str]:
    """One stream's part of the view, drawn after the events it carries."""
    if AudioChunk.TYPE in events:
        return await _audio(client, key)
    if Transcript.TYPE in events:
        rows = await last_entries(client, key, _committed, count)
        return [await _heading(client, key, "TRANSCRIPT", len(rows)),
                *(_line(e, f"utt {e.event.utterance:<3}", e.event.text) for e in rows
                  if isinstance(e.event, Transcript))]
    if Translation.TYPE in events:
        rows = await last_entries(client, key, _committed, count)
        lines = [await _heading(client, key, f"TRANSLATION {lang}", len(rows))]
        for e in rows:
            if isinstance(e.event, Translation):
                lines.append(_line(e, f"src {e.event.src_seq:<3}", e.event.text))
                lines.append(f"{'':<36}<- {e.event.source_text}  [{e.event.route}]")
        return lines
    if Speech.TYPE in events:
        rows = await last_entries(
            client, key, lambda ev: isinstance(ev, Speech) and ev.session == session, count)
        lines = [await _heading(client, key, f"SPEECH {lang} (this session)", len(rows))]
        for e in rows:
            if isinstance(e.event, Speech):
                sp = e.event
                lines.append(_line(e, f"{sp.duration:4.1f} s {sp.backend:<8}", sp.text,
                                   seq=f"{sp.seq}.{sp.part}"))
        return lines + _latency_table(rows)
    rows = await last_entries(client, key, lambda _ev: True, count)
    return [await _heading(client, key, key, len(rows))]


def _committed(event: Event) -> bool:
    return getattr(event, "kind", None) == "committed"


async def _audio(client: Any, key: str) -> list[str]:
    length = int(await client.xlen(key))
    head = f"AUDIO {key}  {length} entries"
    if length == 0:
        return [head + " (none retained)"]
    first = await last_entries_from(client, key, "-")
    newest = await client.xrevrange(key, "+", "-", count=3)
    events = [_decode(f) for _i, f in newest]
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    ended = any(isinstance(e, ControlEvent) and e.action == "end" for e in events)
    lines = [head]
    if chunks and first is not None:
        last = chunks[0]
        seconds = (last.offset + last.samples) / last.rate
        lines.append(f"  {seconds:.1f} s of session audio, {last.utterance + 1} utterance(s), "
                     f"captured {_clock(first.capture_start)} .. {_clock(last.capture_end)}, "
                     f"end marker: {'yes' if ended else 'no'}")
    lines += _group_lines(await _groups(client, key))
    return lines


async def last_entries_from(client: Any, key: str, start: str) -> Event | None:
    rows = await client.xrange(key, start, "+", count=1)
    return _decode(rows[0][1]) if rows else None


async def _heading(client: Any, key: str, title: str, shown: int) -> str:
    length = int(await client.xlen(key))
    groups = await _groups(client, key) if length else []
    group_text = "  ".join(f"group {g['group']}: lag {g['lag']}, pending {g['pending']}"
                           for g in groups)
    return f"{title}  {key}  ({length} entries, last {shown} shown)  {group_text}".rstrip()


def _group_lines(groups: list[dict[str, Any]]) -> list[str]:
    return [f"  group {g['group']}: lag {g['lag']}, pending {g['pending']}, "
            f"consumers {g['consumers']}, last delivered {g['last_delivered']}" for g in groups]


def _line(entry: Entry, what: str, text: str, seq: str | None = None) -> str:
    ev = entry.event
    seq = seq if seq is not None else str(ev.seq)
    return (f"  {entry.id:<17} seq {seq:<6} {what:<12} +{ev.emitted - ev.capture_end:5.2f} s  "
            f"{text}\n{'':<36}{hops_text(ev)}")


def hop_parts(event: Event) -> list[tuple[str, float]]:
    """The latency of ``event`` split by its trace: bus/wait time and time in each stage."""
    parts: list[tuple[str, float]] = []
    previous, when = "capture", event.capture_end
    for hop in event.trace:
        parts.append((f"{previous}->{hop.stage}", hop.t_in - when))
        parts.append((hop.stage, hop.t_out - hop.t_in))
        previous, when = hop.stage, hop.t_out
    if event.emitted:
        parts.append((f"{previous}->written", event.emitted - when))
    return parts


def hops_text(event: Event) -> str:
    return "  ".join(f"{name} {value:.2f}" for name, value in hop_parts(event))


def _latency_table(rows: list[Entry]) -> list[str]:
    """p50/max of each hop over the speech pieces shown."""
    by_name: dict[str, list[float]] = {}
    totals = []
    for e in rows:
        for name, value in hop_parts(e.event):
            by_name.setdefault(name, []).append(value)
        totals.append(e.event.emitted - e.event.capture_end)
    if not totals:
        return []
    cells = [f"{name} {percentile(v, 50):.2f}/{max(v):.2f}" for name, v in by_name.items()]
    return [f"  latency p50/max (s): total {percentile(totals, 50):.2f}/{max(totals):.2f}; "
            + "; ".join(cells)]


def _decode(fields: dict[Any, Any]) -> Event | None:
    try:
        return decode_event(fields)
    except MalformedEvent:
        return None


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch)) + f".{int(epoch % 1 * 1000):03d}"

