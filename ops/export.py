"""`s2st export`: one session to files.

- ``source.wav``: the audio chunks on the session timeline (by sample offset, from the
  session's first retained sample), silence where nothing was sent;
- ``captions.<lang>.srt`` and ``captions.<lang>.vtt``: the committed transcripts (source
  language) and the committed translations (each target), timed by the source audio they
  cover (``sample_start``/``sample_end`` on the same timeline);
- ``speech.<lang>.wav``: the session's speech pieces, each at its source capture offset
  (after the previous one where that would overlap: the player's WAV placement);
- ``events.json``: every event of the session's streams without PCM, each with its latency
  end to end (``emitted - capture_end``) and per hop of its trace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bus.command import run_async
from bus.events import AudioChunk, ControlEvent, Event, Speech, Transcript, Translation
from bus.ids import InvalidId, check_id, check_lang
from bus.keys import Keys
from bus.registry import Registry, session_record
from bus.settings import BusSettings, add_bus_options
from ops.session_read import Entry, read_all, speech_langs, translation_langs
from ops.session_view import hop_parts
from pipeline import PIPELINE
from player_agent.latency import percentile
from player_agent.outputs import OUTPUT_RATE, OutputError, WavSink

SOURCE_RATE = 16_000
MIN_CUE_S = 0.3


class ExportError(RuntimeError):
    """Nothing to export (a one-line message)."""


@dataclass(frozen=True)
class Timeline:
    """Time 0 of the exported files: the session's first sample."""

    offset: int  # its session sample offset
    time: float  # its capture time (epoch seconds)
    rate: int = SOURCE_RATE

    def at_sample(self, sample: int) -> float:
        return max(0.0, (sample - self.offset) / self.rate)

    def at_time(self, epoch: float) -> float:
        return max(0.0, epoch - self.time)


@dataclass
class Cue:
    start: float
    end: float
    text: str


@dataclass
class SessionData:
    room: str
    session: str
    record: dict[str, Any]
    streams: dict[str, list[Entry]]  # local stream name (audio:s1, speech:es) -> entries
    langs: list[str]  # target languages exported


# -- reading ---------------------------------------------------------------------------


async def load(client: Any, keys: Keys, room: str, session: str,
               langs: list[str] | None = None) -> SessionData:
    registry = Registry(client, keys)
    info = await registry.session(room, session)
    targets = list(langs) if langs else await translation_langs(client, keys, room, session)
    streams: dict[str, list[Entry]] = {}
    # the pipeline's families (docs/architecture.md): per-session ones, then per language,
    # then the room-wide ones (this session's entries)
    for family in PIPELINE:
        if family.per_session and not family.per_lang:
            key = family.key(keys, room, session)
            streams[keys.local_part(key)] = await read_all(client, key)
    for family in PIPELINE:
        if family.per_session and family.per_lang:
            for lang in targets:
                key = family.key(keys, room, session, lang)
                streams[keys.local_part(key)] = await read_all(client, key)
    for family in PIPELINE:
        if family.room_wide:
            spoken = targets if langs else sorted(set(targets)
                                                  | set(await speech_langs(client, keys, room)))
            for lang in spoken:
                key = family.key(keys, room, lang=lang)
                rows = await read_all(client, key, session=session)
                if rows or lang in targets:
                    streams[keys.local_part(key)] = rows
                    if lang not in targets:
                        targets.append(lang)
    if info is None and not any(streams.values()):
        raise ExportError(f"unknown session {session!r} in room {room!r} "
                          "(s2st sessions --room ROOM lists them)")
    record = session_record(await client.hget(keys.sessions(room), session))
    if info is not None:
        record["status"] = info.status
    return SessionData(room, session, record, streams, sorted(targets))


def events_of(data: SessionData, prefix: str, cls: type[Event]) -> list[Any]:
    return [e.event for name, rows in data.streams.items() if name.startswith(prefix)
            for e in rows if isinstance(e.event, cls)]


def timeline(data: SessionData) -> Timeline:
    chunks = events_of(data, "audio:", AudioChunk)
    if chunks:
        first = min(chunks, key=lambda c: c.offset)
        return Timeline(first.offset, first.capture_start, first.rate)
    texts = events_of(data, "transcript:", Transcript) + events_of(data, "translation:",
                                                                   Translation)
    events = [e for rows in data.streams.values() for e in rows
              if not isinstance(e.event, ControlEvent)]
    if not events:
        return Timeline(0, time.time())
    offset = min((t.sample_start for t in texts), default=0)
    return Timeline(offset, min(e.event.capture_start for e in events))


# -- the files ------------------------------------------------------------------------------


def source_pcm(chunks: list[AudioChunk], tl: Timeline) -> np.ndarray:
    """The chunks placed by sample offset on the timeline; zeros where none was sent."""
    chunks = [c for c in chunks if c.rate == tl.rate]
    end = max((c.offset + c.samples for c in chunks), default=tl.offset)
    out = np.zeros(max(0, end - tl.offset), dtype="<i2")
    for c in chunks:
        start = c.offset - tl.offset
        if start >= 0 and c.samples:
            out[start:start + c.samples] = np.frombuffer(c.pcm, dtype="<i2")
    return out


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def cues(events: Sequence[Transcript | Translation], tl: Timeline) -> list[Cue]:
    """Committed, non-empty texts timed by the source samples they cover, in order."""
    out: list[Cue] = []
    ordered: list[Transcript | Translation] = sorted(events, key=lambda e: (e.sample_start, e.seq))
    for ev in ordered:
        text = " ".join(ev.text.split())
        if ev.kind != "committed" or not text:
            continue
        if ev.sample_end > ev.sample_start:
            start, end = tl.at_sample(ev.sample_start), tl.at_sample(ev.sample_end)
        else:
            start, end = tl.at_time(ev.capture_start), tl.at_time(ev.capture_end)
        out.append(Cue(start, max(end, start + MIN_CUE_S), text))
    return out


def _stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(items: list[Cue]) -> str:
    blocks = [f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{c.text}\n"
              for i, c in enumerate(items, 1)]
    return "\n".join(blocks)


def to_vtt(items: list[Cue]) -> str:
    def clean(text: str) -> str:  # escaping ">" also keeps "-->" out of the cue text
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    blocks = [f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n{clean(c.text)}\n"
              for c in items]
    return "\n".join(["WEBVTT\n", *blocks])


async def write_speech(path: Path, pieces: list[Speech], tl: Timeline) -> float:
    """The pieces in (seq, part) order, each once, placed as the player's WAV writer does."""
    sink = WavSink(path, rate=OUTPUT_RATE, paced=False)
    sink.set_origin(tl.time)
    seen: set[tuple[int, int]] = set()
    try:
        for p in sorted(pieces, key=lambda p: (p.seq, p.part)):
            if (p.seq, p.part) in seen:
                continue
            seen.add((p.seq, p.part))
            await sink.play(p.pcm, p.rate, p.capture_start)
    finally:
        sink.close()
    return sink.written / sink.rate


def event_json(entry: Entry, stream: str) -> dict[str, Any]:
    ev = entry.event
    data = ev.model_dump(exclude={"pcm"})
    latency: dict[str, Any] | None = None
    if not isinstance(ev, ControlEvent):
        latency = {"total": round(ev.emitted - ev.capture_end, 4),
                   "hops": {name: round(v, 4) for name, v in hop_parts(ev)}}
    return {"id": entry.id, "stream": stream, **data, "latency": latency}


def latency_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    totals = [r["latency"]["total"] for r in rows if r["latency"] is not None]
    if not totals:
        return {"count": 0}
    return {"count": len(totals), "p50": round(percentile(totals, 50), 4),
            "p95": round(percentile(totals, 95), 4), "max": round(max(totals), 4)}


async def export_session(client: Any, keys: Keys, room: str, session: str, out: Path,
                         langs: list[str] | None = None) -> dict[str, Any]:
    """Write every file; returns what was written (file name -> a short description)."""
    data = await load(client, keys, room, session, langs)
    return await asyncio.to_thread(write_files, data, out)


def write_files(data: SessionData, out: Path) -> dict[str, Any]:
    room, session = data.room, data.session
    tl = timeline(data)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    chunks = events_of(data, "audio:", AudioChunk)
    pcm = source_pcm(chunks, tl)
    write_wav(out / "source.wav", pcm, tl.rate)
    written["source.wav"] = f"{len(pcm) / tl.rate:.1f} s, {len(chunks)} chunks"
    source_lang = data.record.get("source_lang") or "src"
    transcripts = events_of(data, "transcript:", Transcript)
    if transcripts and transcripts[0].lang != "auto":
        source_lang = transcripts[0].lang
    captions = {source_lang: cues(transcripts, tl)}
    for lang in data.langs:
        captions[lang] = cues(events_of(data, f"translation:{session}:{lang}", Translation), tl)
    for lang, items in captions.items():
        (out / f"captions.{lang}.srt").write_text(to_srt(items), encoding="utf-8")
        (out / f"captions.{lang}.vtt").write_text(to_vtt(items), encoding="utf-8")
        written[f"captions.{lang}.srt/.vtt"] = f"{len(items)} captions"
    for lang in data.langs:
        pieces = events_of(data, f"speech:{lang}", Speech)
        seconds = asyncio.run(write_speech(out / f"speech.{lang}.wav", pieces, tl))
        written[f"speech.{lang}.wav"] = f"{seconds:.1f} s, {len(pieces)} pieces"
    streams = {name: [event_json(e, name) for e in rows] for name, rows in data.streams.items()}
    doc = {
        "room": room, "session": session, "record": data.record, "exported": time.time(),
        "timeline": {"offset": tl.offset, "time": tl.time, "rate": tl.rate},
        "languages": {"source": source_lang, "targets": data.langs},
        "latency": {name: latency_summary(rows) for name, rows in streams.items()
                    if not name.startswith("audio:")},
        "streams": streams,
    }
    (out / "events.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False),
                                     encoding="utf-8")
    written["events.json"] = f"{sum(len(r) for r in streams.values())} events"
    return written


# -- the command -------------------------------------------------------------------------------


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "export",
        help="a session to files: source audio, captions (SRT/WebVTT), translated speech, "
        "events and latencies (JSON)",
        description="Write one session to a folder: source.wav, captions.<lang>.srt/.vtt "
        "for the source language and each target, speech.<lang>.wav, events.json.",
    )
    p.add_argument("--room", required=True)
    p.add_argument("--session", required=True)
    p.add_argument("--out", required=True, help="folder to write (created if needed)")
    p.add_argument("--lang", nargs="+", action="extend",
                   help="target language(s) (default: every one the session has)")
    add_bus_options(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    try:
        room = check_id(args.room, "room id")
        session = check_id(args.session, "session id")
        langs = [check_lang(x) for x in args.lang or []]
    except InvalidId as exc:
        print(f"s2st export: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"s2st export: {out} exists and is not a folder", file=sys.stderr)
        return 2

    async def main(settings: BusSettings) -> int:
        from bus.connection import connect

        client = await connect(settings)
        try:
            written = await export_session(client, settings.keys, room, session, out,
                                           langs or None)
        except ExportError as exc:
            print(f"s2st export: {exc}", file=sys.stderr)
            return 2
        except (OSError, OutputError) as exc:
            print(f"s2st export: cannot write {out}: {exc}", file=sys.stderr)
            return 2
        finally:
            await client.aclose()
        for name, what in written.items():
            print(f"{out / name}: {what}")
        return 0

    return run_async(args, main)

