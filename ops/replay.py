"""`s2st replay`: run a recorded session again through the current workers, into new streams.

Copy mode (``--stage asr``, the default): a new session is registered (same source language
and speaker, id ``<session>-replay-<n>`` unless ``--as``), the original's audio chunks (all,
or a range by capture time or entry id) are copied into its audio stream, with seq renumbered
from 0, offsets and utterance ids kept and capture times shifted to now, paced at real time
(each chunk written when its shifted last sample is "captured") or as fast as possible, then
the end marker; the running workers handle it like any session.

Stage mode (``--stage mt`` or ``tts``): the new session's input stream of that stage is a
copy of the original's (its transcripts, or its translation streams), from an entry on; the
stages before it are marked finished for the new session (``fin|...`` in the room's progress
hash) so they never wait for input that will not come, and the stage and those after it
produce the new session's outputs. Copied events keep their seq, text and sample offsets;
their capture times and trace are shifted by the same amount, and at real-time pace they are
written with the original's spacing.

Nothing of the original session is ever written: its streams, groups and registry fields
stay as they were (the tests compare them byte for byte).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bus import clock
from bus.command import run_async
from bus.events import (
    AudioChunk,
    ControlEvent,
    Event,
    Hop,
    Speech,
    Transcript,
    Translation,
    decode_event,
)
from bus.ids import InvalidId, check_id
from bus.keys import Keys, Partition
from bus.producer import Publisher
from bus.registry import Registry, SessionInfo, session_record
from bus.settings import BusSettings, add_bus_options
from ops.session_read import Entry, family_langs, parse_entry_id, read_all
from pipeline import PIPELINE
from player_agent.end_trace import has_end_marker

Stage = Literal["asr", "mt", "tts"]
STAGES: tuple[Stage, ...] = PIPELINE.workers  # type: ignore[assignment]
FAMILY = {stage: PIPELINE.input_of(stage).name for stage in STAGES}  # stage -> its input
EPOCH_MIN = 1e9  # a time point at least this large is epoch seconds, not seconds into the session
HEARTBEAT_S = 2.0
BATCH = 200
MAX_SLEEP_S = 0.5


class ReplayError(RuntimeError):
    """Bad input or a state that makes the replay impossible (a one-line message)."""


@dataclass(frozen=True)
class Point:
    """Where a range starts or ends: a stream entry id, or a time."""

    entry: tuple[int, int] | None = None
    seconds: float | None = None  # into the session (or epoch seconds if >= EPOCH_MIN)

    @classmethod
    def parse(cls, text: str, what: str) -> Point:
        text = text.strip()
        if re.fullmatch(r"[0-9]+-[0-9]*", text):
            try:
                return cls(entry=parse_entry_id(text))
            except ValueError as exc:
                raise ReplayError(f"{what}: {exc}") from None
        try:
            seconds = float(text.removesuffix("s"))
        except ValueError:
            raise ReplayError(f"{what}: {text!r} is neither seconds (12.5) nor an entry id "
                              "(1795505490169-0)") from None
        if not 0 <= seconds < float("inf"):
            raise ReplayError(f"{what}: {text!r} must be a time of at least 0 s")
        return cls(seconds=seconds)

    def time(self, origin: float) -> float | None:
        if self.seconds is None:
            return None
        return self.seconds if self.seconds >= EPOCH_MIN else origin + self.seconds


@dataclass
class ReplayPlan:
    room: str
    session: str
    to_room: str | None = None
    new_session: str | None = None
    stage: Stage = "asr"
    start: Point | None = None
    end: Point | None = None
    pace: Literal["realtime", "fast"] = "fast"


@dataclass
class ReplayResult:
    room: str
    session: str
    streams: dict[str, int] = field(default_factory=dict)  # new stream key -> events copied
    seconds: float = 0.0  # of audio (copy mode)


# -- selecting what to copy ------------------------------------------------------------------


def in_range(entry: Entry, start: Point | None, end: Point | None, origin: float) -> bool:
    """Entry ids: ``start <= id <= end``; times: the event's capture span meets ``[start, end)``."""
    ev = entry.event
    eid = parse_entry_id(entry.id)
    t0 = start.time(origin) if start is not None else None
    t1 = end.time(origin) if end is not None else None
    if start is not None and start.entry is not None and eid < start.entry:
        return False
    if end is not None and end.entry is not None and eid > end.entry:
        return False
    if t0 is not None and not (ev.capture_end > t0 or ev.capture_start >= t0):
        return False
    return not (t1 is not None and ev.capture_start >= t1)


async def select(client: Any, key: str, plan: ReplayPlan, origin: float | None) -> list[Entry]:
    """The session events of ``key`` in the plan's range (control events left out)."""
    rows = [e for e in await read_all(client, key) if not isinstance(e.event, ControlEvent)]
    if origin is None:
        origin = rows[0].event.capture_start if rows else 0.0
    return [e for e in rows if in_range(e, plan.start, plan.end, origin)]


# -- rewriting events --------------------------------------------------------------------------


def moved(event: Event, room: str, session: str, delta: float, seq: int | None = None) -> Event:
    """``event`` in another session, its capture times and trace shifted by ``delta``."""
    trace = [Hop(stage=h.stage, worker=h.worker, t_in=h.t_in + delta, t_out=h.t_out + delta)
             for h in event.trace]
    update: dict[str, Any] = dict(room=room, session=session, trace=trace, emitted=0.0,
                                  capture_start=max(0.0, event.capture_start + delta),
                                  capture_end=max(0.0, event.capture_end + delta))
    if seq is not None:
        update["seq"] = seq
    return event.model_copy(update=update)


@dataclass
class Write:
    due: float  # wall-clock time to write it at real-time pace
    key: str
    event: Event


def plan_writes(rows: dict[str, list[Entry]], room: str, session: str, stage: Stage,
                now: float) -> list[Write]:
    """Every copied event with its new stream key (the dict's keys) and when to write it."""
    writes: list[Write] = []
    if FAMILY[stage] == PIPELINE.root.name:  # the session source's stream
        [(key, entries)] = rows.items()
        delta = now - entries[0].event.capture_start
        for seq, e in enumerate(entries):
            ev = moved(e.event, room, session, delta, seq=seq)
            writes.append(Write(ev.capture_end, key, ev))
        return writes
    first = min(e.event.emitted or e.event.capture_end for es in rows.values() for e in es)
    delta = now - first
    for key, entries in rows.items():
        for e in entries:
            ev = moved(e.event, room, session, delta)
            writes.append(Write((e.event.emitted or e.event.capture_end) + delta, key, ev))
    writes.sort(key=lambda w: w.due)
    return writes


def end_marker(room: str, session: str, last: Event | None, now: float) -> ControlEvent:
    t = last.capture_end if last is not None else now
    seq = last.seq + 1 if last is not None else 0
    return ControlEvent.end_of(room, session, at=t, seq=seq, reason="replay")


# -- the replay ------------------------------------------------------------------------------------


class Replay:
    def __init__(self, client: Any, settings: BusSettings,
                 say: Callable[[str], None] = lambda _text: None) -> None:
        self.r = client
        self.settings = settings
        self.keys: Keys = settings.keys
        self.registry = Registry(client, self.keys, cluster=settings.redis_cluster)
        self.publisher = Publisher(client, settings)
        self.say = say

    async def run(self, plan: ReplayPlan) -> ReplayResult:
        info = await self.registry.session(plan.room, plan.session)
        if info is None:
            raise ReplayError(f"unknown session {plan.session!r} in room {plan.room!r} "
                              "(s2st sessions --room ROOM lists them)")
        to_room = plan.to_room or plan.room
        new = await self._new_session_id(plan, to_room)
        sources = await self._sources(plan, info)
        rows: dict[str, list[Entry]] = {}
        origin = await self._origin(plan)
        for lang, key in sources.items():
            picked = await select(self.r, key, plan, origin)
            if picked:
                rows[self._target_key(plan.stage, to_room, new, lang)] = picked
        if not rows:
            raise ReplayError(f"nothing to replay: no {FAMILY[plan.stage]} entries of "
                              f"{plan.room}/{plan.session} in the range given")
        await self._prepare_room(plan, to_room)
        await self._finish_upstream(plan.stage, to_room, new, rows)
        await self.registry.register_session(to_room, new, info.source_lang, info.speaker)
        await self._mark_replay(to_room, new, plan)
        self.say(f"replaying {plan.room}/{plan.session} into {to_room}/{new} "
                 f"({plan.stage} onwards, {sum(map(len, rows.values()))} "
                 f"{FAMILY[plan.stage]} events, {plan.pace} pace)")
        result = ReplayResult(to_room, new)
        try:
            writes = plan_writes(rows, to_room, new, plan.stage, clock.now())
            await self._write(writes, plan.pace == "realtime", to_room, new)
        except BaseException:
            await self._end(to_room, new, plan.stage, rows, "error")
            raise
        await self._end(to_room, new, plan.stage, rows, "replayed")
        for key, entries in rows.items():
            result.streams[key] = len(entries)
        if FAMILY[plan.stage] == PIPELINE.root.name:
            chunks = [e.event for es in rows.values() for e in es if isinstance(e.event, AudioChunk)]
            result.seconds = sum(c.samples / c.rate for c in chunks)
        return result

    # -- checks and set-up -------------------------------------------------------------------
    async def _new_session_id(self, plan: ReplayPlan, to_room: str) -> str:
        if plan.new_session is not None:
            new = check_id(plan.new_session, "session id")
            if await self.registry.session(to_room, new) is not None:
                raise ReplayError(f"session {new!r} already exists in room {to_room!r}; "
                                  "choose another --as")
            return new
        taken = {s.session for s in await self.registry.sessions(to_room)}
        n = 1
        while f"{plan.session}-replay-{n}" in taken:
            n += 1
        new = f"{plan.session}-replay-{n}"
        try:
            return check_id(new, "session id")
        except InvalidId:
            raise ReplayError(f"{new!r} is too long for a session id; give one with --as") from None

    async def _sources(self, plan: ReplayPlan, info: SessionInfo) -> dict[str, str]:
        """lang ('' for per-session streams) -> the original's input stream of the stage."""
        family = PIPELINE.input_of(plan.stage)
        if not family.per_lang:
            key = family.key(self.keys, plan.room, plan.session)
            if not await self.r.exists(key):
                raise ReplayError(f"session {plan.room}/{plan.session} has no "
                                  f"{family.name} stream (expired or never written)")
            return {"": key}
        langs = await family_langs(self.r, self.keys, family, plan.room, plan.session)
        if not langs:
            raise ReplayError(f"session {plan.room}/{plan.session} has no {family.name} streams")
        return {lang: family.key(self.keys, plan.room, plan.session, lang) for lang in langs}

    async def _origin(self, plan: ReplayPlan) -> float | None:
        """Capture time of the session's first retained audio sample (times are from there)."""
        root = PIPELINE.root
        key = root.key(self.keys, plan.room, plan.session)
        for _raw, fields in await self.r.xrange(key, "-", "+", count=20):
            if fields.get(b"type") in {t.encode() for t in root.events}:
                return float(fields[b"capture_start"])
        return None

    def _target_key(self, stage: Stage, room: str, session: str, lang: str) -> str:
        return self.keys.stream(FAMILY[stage], Partition(room, session, lang or None))

    async def _prepare_room(self, plan: ReplayPlan, to_room: str) -> None:
        """A new room for the replay gets the original room's current targets."""
        if to_room == plan.room or await self.registry.room_exists(to_room):
            return
        targets = await self.registry.room_targets(plan.room)
        await self.registry.create_room(to_room, targets)
        self.say(f"created room {to_room} with targets {', '.join(targets) or 'none'}")

    async def _finish_upstream(self, stage: Stage, room: str, session: str,
                               rows: dict[str, list[Entry]]) -> None:
        """Mark the stages before ``stage`` finished for the new session (and, for tts, the
        target languages without a copied stream), so no worker waits on them."""
        fields: list[str] = []
        targets = await self.registry.room_targets(room)
        for before in PIPELINE.upstream(stage):
            family = PIPELINE.input_of(before)
            fields += [self.keys.finished_field(before, family.name, Partition(room, session, lang))
                       for lang in (targets if family.per_lang else [None])]
        family = PIPELINE.input_of(stage)
        if family.per_lang:
            copied = {self.keys.local_part(k).rsplit(":", 1)[1] for k in rows}
            for lang in targets:
                if lang not in copied:
                    fields.append(self.keys.finished_field(
                        stage, family.name, Partition(room, session, lang)))
        if fields:
            await self.r.hset(self.keys.progress(room), mapping=dict.fromkeys(fields, "1"))

    async def _mark_replay(self, room: str, session: str, plan: ReplayPlan) -> None:
        """Note in the new session's record what it replays."""
        record = session_record(await self.r.hget(self.keys.sessions(room), session))
        record["replay_of"] = f"{plan.room}/{plan.session}"
        record["replay_stage"] = plan.stage
        await self.r.hset(self.keys.sessions(room), session, json.dumps(record))

    # -- writing -----------------------------------------------------------------------------
    async def _write(self, writes: list[Write], paced: bool, room: str, session: str) -> None:
        next_beat = time.monotonic() + HEARTBEAT_S
        i = 0
        while i < len(writes):
            now = clock.now()
            if paced and writes[i].due > now:
                await asyncio.sleep(min(writes[i].due - now, MAX_SLEEP_S))
            else:
                j = i
                while j < len(writes) and j - i < BATCH and (not paced or writes[j].due <= now):
                    j += 1
                await self._publish(writes[i:j])
                i = j
            if time.monotonic() >= next_beat:
                await self.registry.heartbeat(room, session)
                next_beat = time.monotonic() + HEARTBEAT_S

    async def _publish(self, writes: list[Write]) -> None:
        by_key: dict[str, list[Event]] = {}
        for w in writes:  # one stream at a time keeps each stream in order
            by_key.setdefault(w.key, []).append(w.event)
        for key, events in by_key.items():
            await self.publisher.publish_many(key, list(events))

    async def _end(self, room: str, session: str, stage: Stage, rows: dict[str, list[Entry]],
                   reason: str) -> None:
        now = clock.now()
        if FAMILY[stage] == PIPELINE.root.name:  # the session source's stream
            [key] = rows
            last = await self._last_written(key)
            marker = end_marker(room, session, last, now)
            marker.emitted = now
            await self.registry.end_session(room, session, reason, marker_stream=key,
                                            marker=marker)
            return
        for key in rows:
            await self.publisher.publish(key, end_marker(room, session,
                                                         await self._last_written(key), now))
        await self.registry.end_session(room, session, reason)

    async def _last_written(self, key: str) -> Event | None:
        rows = await self.r.xrevrange(key, "+", "-", count=1)
        return decode_event(rows[0][1]) if rows else None


# -- waiting for the workers ----------------------------------------------------------------


async def outputs_done(client: Any, keys: Keys, room: str, session: str, stage: Stage) -> bool:
    """True once the new session's outputs after ``stage`` all carry their end marker."""
    return not await outputs_not_ended(client, keys, room, session, stage)


async def outputs_not_ended(client: Any, keys: Keys, room: str, session: str,
                            stage: Stage) -> list[str]:
    """The new session's output streams after ``stage`` that lack its end marker."""
    registry = Registry(client, keys)
    targets = await registry.room_targets(room)
    keys_needed: list[str] = []
    family = PIPELINE.input_of(stage)
    langs = targets if not family.per_lang else await family_langs(client, keys, family, room,
                                                                    session)
    for out in PIPELINE.downstream(family.name):
        keys_needed += out.keys_of(keys, room, session, targets if out.per_session else langs)
    return [key for key in keys_needed if not await has_end_marker(client, key, session)]


async def wait_done(client: Any, keys: Keys, room: str, session: str, stage: Stage,
                    timeout_s: float, poll_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await outputs_done(client, keys, room, session, stage):
            return True
        await asyncio.sleep(poll_s)
    return False


async def committed_texts(client: Any, key: str) -> list[str]:
    """The committed transcript or translation texts of a per-session stream, in order."""
    return [e.event.text.strip() for e in await read_all(client, key)
            if isinstance(e.event, Transcript | Translation) and e.event.kind == "committed"
            and e.event.text.strip()]


async def spoken_texts(client: Any, key: str, session: str) -> list[str]:
    """The texts of ``session``'s speech pieces in a room's speech stream, in (seq, part) order."""
    pieces = {(e.event.seq, e.event.part): e.event.text.strip()
              for e in await read_all(client, key, session=session)
              if isinstance(e.event, Speech)}
    return [pieces[k] for k in sorted(pieces)]


async def compare(client: Any, keys: Keys, original: tuple[str, str],
                  replayed: tuple[str, str], langs: list[str], stage: Stage) -> list[str]:
    """One line per output of the replay: its committed captions (or spoken texts) compared
    with the original's."""
    lines = []
    outputs = PIPELINE.downstream(PIPELINE.input_of(stage).name)
    names: list[tuple[str, str | None]] = []
    for out in outputs:
        if out.per_session:
            names += [(out.name, lang) for lang in (langs if out.per_lang else [None])]
    pairs = []
    for family, lang in names:
        pairs.append((f"{family}{':' + lang if lang else ''}",
                      await committed_texts(client, keys.stream(family, Partition(*original, lang))),
                      await committed_texts(client, keys.stream(family, Partition(*replayed, lang)))))
    for out in outputs:
        if out.room_wide:
            for lang in langs:
                pairs.append((f"{out.name}:{lang}",
                               await spoken_texts(client, out.key(keys, original[0], lang=lang),
                                                  original[1]),
                               await spoken_texts(client, out.key(keys, replayed[0], lang=lang),
                                                  replayed[1])))
    for what, a, b in pairs:
        same = " ".join(a) == " ".join(b)
        lines.append(f"{what:<16} original {len(a):>3} pieces, replay {len(b):>3}: "
                     + ("same text" if same else "different text"))
        if not same:
            lines.append(f"  original: {' '.join(a)}")
            lines.append(f"  replay:   {' '.join(b)}")
    return lines


# -- the command ---------------------------------------------------------------------------------


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "replay",
        help="run a recorded session (or a range of it) again through the workers, into a "
        "new session",
        description="Copy a recorded session's audio (or, with --stage, the input stream of a "
        "later stage) into a NEW session and let the running workers process it: compare a new "
        "model with the old output, or re-run one stage. The original session is never "
        "modified. Times are seconds from the session's first audio sample (12.5), epoch "
        "seconds, or stream entry ids (1795505490169-0).",
    )
    p.add_argument("--room", required=True, help="room of the recorded session")
    p.add_argument("--session", required=True, help="the recorded session")
    p.add_argument("--to-room", help="replay into this room (default: the same room; a new "
                   "room gets the original room's targets)")
    p.add_argument("--as", dest="new_session", metavar="SESSION",
                   help="id of the new session (default <session>-replay-<n>)")
    p.add_argument("--from", dest="start", metavar="T", help="start of the range: seconds, "
                   "epoch seconds or an entry id")
    p.add_argument("--to", dest="end", metavar="T", help="end of the range (same forms)")
    p.add_argument("--from-entry", metavar="ID", help="start at this entry id of the stage's "
                   "input stream")
    p.add_argument("--stage", choices=STAGES, default="asr",
                   help="re-run from this stage: asr copies the audio (default), mt the "
                   "transcripts, tts the translations")
    p.add_argument("--pace", choices=["realtime", "fast"], default="realtime",
                   help="write at the original's pace (default) or as fast as possible")
    p.add_argument("--wait", type=float, nargs="?", const=300.0, metavar="S",
                   help="then wait (up to S s, 300) for the workers and compare the captions")
    add_bus_options(p)
    p.set_defaults(func=cmd_replay)


def plan_from_args(args: argparse.Namespace) -> ReplayPlan:
    room = check_id(args.room, "room id")
    session = check_id(args.session, "session id")
    to_room = check_id(args.to_room, "room id") if args.to_room else None
    new = check_id(args.new_session, "session id") if args.new_session else None
    if args.start and args.from_entry:
        raise ReplayError("give --from or --from-entry, not both")
    start = Point.parse(args.start, "--from") if args.start else None
    if args.from_entry:
        start = Point.parse(args.from_entry, "--from-entry")
        if start.entry is None:
            raise ReplayError(f"--from-entry: {args.from_entry!r} is not an entry id "
                              "(1795505490169-0)")
    end = Point.parse(args.end, "--to") if args.end else None
    if start is not None and end is not None:
        if start.entry is not None and end.entry is not None and start.entry > end.entry:
            raise ReplayError("the range is empty: --from is after --to")
        if start.seconds is not None and end.seconds is not None and start.seconds >= end.seconds:
            raise ReplayError("the range is empty: --from is not before --to")
    if (to_room or room) == room and new == session:
        raise ReplayError("the replay cannot write into the original session")
    return ReplayPlan(room, session, to_room, new, args.stage, start, end, args.pace)


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        plan = plan_from_args(args)
    except (ReplayError, InvalidId) as exc:
        print(f"s2st replay: {exc}", file=sys.stderr)
        return 2
    if args.wait is not None and not args.wait > 0:
        print("s2st replay: --wait must be positive", file=sys.stderr)
        return 2

    async def main(settings: BusSettings) -> int:
        from bus.connection import connect

        client = await connect(settings)
        try:
            replay = Replay(client, settings, say=lambda text: print(text, flush=True))
            try:
                result = await replay.run(plan)
            except ReplayError as exc:
                print(f"s2st replay: {exc}", file=sys.stderr)
                return 2
            copied = sum(result.streams.values())
            print(f"done: {copied} events copied into {result.room}/{result.session}"
                  + (f" ({result.seconds:.1f} s of audio)" if result.seconds else ""))
            print(f"s2st inspect --room {result.room} --session {result.session}")
            if args.wait is None:
                return 0
            if not await wait_done(client, settings.keys, result.room, result.session,
                                   plan.stage, args.wait):
                waiting = await outputs_not_ended(client, settings.keys, result.room,
                                                  result.session, plan.stage)
                print(f"s2st replay: the workers did not finish within {args.wait:.0f} s: "
                      f"no end marker yet in {', '.join(waiting) or '(they just ended)'} "
                      "(are the workers of those stages running? s2st status)", file=sys.stderr)
                return 1
            langs = await Registry(client, settings.keys).room_targets(result.room)
            family = PIPELINE.input_of(plan.stage)
            if family.per_lang:
                langs = await family_langs(client, settings.keys, family, result.room,
                                           result.session)
            for line in await compare(client, settings.keys, (plan.room, plan.session),
                                      (result.room, result.session), langs, plan.stage):
                print(line)
            return 0
        finally:
            await client.aclose()

    return run_async(args, main)


