"""Running the clips of an evaluation through the real system.

Each clip is spoken into its own session by a real capture agent (``s2st capture --file``,
real-time pace) and heard by a real player (:class:`~player_agent.player.Player`, paced like a
loudspeaker, writing the WAV of what it played). Clips run in ``parallel`` lanes; a lane's
room is ``<run>-<target>-<lane>``, so concurrent clips never share a speech stream and a
room only ever asks for one target language. When a clip's session has ended and the
player has played its last piece, what the stages wrote is read back from the bus:
committed transcripts, committed translations, and every speech piece with its PCM and
trace, matched with the player's timing of it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from bus import clock
from bus.events import AudioChunk, Speech
from bus.keys import Keys, Partition
from bus.registry import Registry
from bus.tasks import cancel_and_wait
from ops.evaluation.manifest import Selected
from ops.replay import committed_texts
from ops.session_read import read_all
from ops.stack import TIER_CLIENTS, s2st_argv
from ops.supervisor import Child, Supervisor
from player_agent.end_trace import trace_end
from player_agent.outputs import WavSink
from player_agent.player import Player, PlayerConfig, UnknownRoom
from player_agent.subscriber import parse_position

SESSION_START_TIMEOUT_S = 30.0
# Once the room is quiet, the player waits this long plus the clip's length for the end of the
# translated speech, then gives up and says where the end stopped (PlayerConfig.end_wait_s).
END_WAIT_S = 30.0
# after the capture ended, the longest wait for the player: its own bound plus playing time
DRAIN_MARGIN_S = 60.0
PLAYER_STOP_S = 10.0  # a stopped player ends within this (it ends at once; this is a bound)
_NOT_ID = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Piece:
    """A speech piece as the player played it (wall-clock times) with its event."""

    seq: int
    part: int
    text: str
    available: float
    started: float
    duration: float
    event: Speech


@dataclass
class ClipRun:
    selected: Selected
    room: str
    session: str
    t0: float = 0.0  # wall-clock capture time of the clip's first sample
    source_s: float = 0.0
    transcripts: list[str] = field(default_factory=list)
    translations: list[str] = field(default_factory=list)
    pieces: list[Piece] = field(default_factory=list)  # in playing order
    played_wav: Path | None = None
    capture_status: int | None = None
    error: str | None = None

    @property
    def clip_id(self) -> str:
        return self.selected.clip.id


def session_id(clip_id: str, taken: set[str]) -> str:
    base = _NOT_ID.sub("-", clip_id).strip("-._")[:56] or "clip"
    if not base[0].isalnum():
        base = "c" + base
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


class ClipRunner:
    """Runs clips through a started stack (workers ready) and collects what came out."""

    def __init__(self, client: Any, keys: Keys, supervisor: Supervisor,
                 env: Callable[[], dict[str, str]], *, run_id: str, out_dir: Path,
                 parallel: int = 1, say: Callable[[str], None] = print) -> None:
        self.r = client
        self.keys = keys
        self.sup = supervisor
        self.env = env
        self.run_id = run_id
        self.out_dir = out_dir
        self.parallel = max(1, parallel)
        self.say = say
        self.registry = Registry(client, keys)
        self._sessions: set[str] = set()

    async def run_all(self, clips: list[Selected]) -> list[ClipRun]:
        queue: asyncio.Queue[tuple[int, Selected]] = asyncio.Queue()
        for item in enumerate(clips):
            queue.put_nowait(item)
        results: dict[int, ClipRun] = {}

        async def lane(n: int) -> None:
            while not queue.empty() and not self.sup.stop_requested.is_set():
                index, selected = queue.get_nowait()
                try:
                    results[index] = await self.run_clip(selected, lane=n)
                except (RedisError, OSError, UnknownRoom) as exc:  # this clip fails, not the run
                    failed = ClipRun(selected, f"{self.run_id}-{selected.target}-{n}", "")
                    failed.error = f"{type(exc).__name__}: {exc}"
                    self.say(f"{selected.clip.id}: failed: {failed.error}")
                    results[index] = failed

        await asyncio.gather(*(lane(n) for n in range(1, min(self.parallel, len(clips)) + 1)))
        return [results[i] for i in sorted(results)]

    async def run_clip(self, selected: Selected, *, lane: int = 1) -> ClipRun:
        clip = selected.clip
        room = f"{self.run_id}-{selected.target}-{lane}"
        run = ClipRun(selected, room, session_id(clip.id, self._sessions))
        await self.registry.create_room(room, [selected.target])
        since = clock.now()
        capture = self.sup.start(f"cap{lane}", s2st_argv(
            "capture", "--room", room, "--session", run.session, "--lang", clip.language,
            "--speaker", "eval", "--file", str(clip.audio), "--no-meter"), self.env(),
            tier=TIER_CLIENTS + 1, service=False)
        self.say(f"{clip.id}: {clip.language} -> {selected.target}, {clip.duration_s:.1f} s "
                 f"(room {room}, session {run.session})")
        if not await self._until_active(room, run.session, capture):
            run.capture_status = capture.returncode
            run.error = f"the capture did not start its session (exit status {capture.returncode})"
            await asyncio.to_thread(self.sup.stop, [capture])
            self.say(f"{clip.id}: {run.error}")
            return run
        run.played_wav = self.out_dir / "audio" / f"{run.session}.{selected.target}.wav"
        run.played_wav.parent.mkdir(parents=True, exist_ok=True)
        sink = WavSink(run.played_wav, paced=True)
        player = Player(self.r, self.keys, PlayerConfig(
            room=room, lang=selected.target, position=parse_position(f"{since - 1:.3f}"),
            until_ended=True, session=run.session, end_wait_s=END_WAIT_S), sink)
        stop = asyncio.Event()
        playing = asyncio.create_task(player.run(stop), name=f"player-{run.session}")
        capture_bound = clip.duration_s * 3 + 60
        drain_bound = END_WAIT_S + 2 * clip.duration_s + DRAIN_MARGIN_S
        try:
            run.capture_status = await self._wait_exit(capture, capture_bound)
            if run.capture_status is None:
                run.error = ("stopped" if self.sup.stop_requested.is_set() else
                             f"the capture did not finish within {capture_bound:.0f} s (stopped)")
            elif run.capture_status != 0:
                run.error = f"the capture exited with status {run.capture_status}"
            done, _ = await asyncio.wait({playing}, timeout=drain_bound)
            if playing not in done:
                trace = await trace_end(self.r, self.keys, room, run.session, selected.target)
                run.error = run.error or (f"the player did not finish within {drain_bound:.0f} s "
                                          f"after the capture: {trace.describe()}")
        finally:
            stop.set()
            stuck = await cancel_and_wait([playing], timeout_s=PLAYER_STOP_S,
                                          what=f"player of {run.session}")
            sink.close()
        if stuck:
            run.error = run.error or "the player did not stop"
            played: list[Any] = []
        else:
            report = playing.result()
            played = report.played
            if report.unfinished:
                run.error = run.error or "; ".join(report.unfinished)
        if run.error:
            self.say(f"{clip.id}: {run.error}")
        await self._collect(run, played)
        return run

    async def _until_active(self, room: str, session: str, capture: Child) -> bool:
        deadline = time.monotonic() + SESSION_START_TIMEOUT_S
        while time.monotonic() < deadline and capture.returncode is None:
            info = await self.registry.session(room, session)
            if info is not None:
                return True
            await asyncio.sleep(0.05)
        return False

    async def _wait_exit(self, child: Child, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while child.returncode is None:
            if time.monotonic() > deadline or self.sup.stop_requested.is_set():
                await asyncio.to_thread(self.sup.stop, [child])  # (it waits: not on the loop)
                return None
            await asyncio.sleep(0.1)
        return child.returncode

    async def _collect(self, run: ClipRun, played: list[Any]) -> None:
        part = Partition(run.room, run.session)
        lang = run.selected.target
        audio = [e.event for e in await read_all(self.r, self.keys.stream("audio", part))
                 if isinstance(e.event, AudioChunk)]
        if audio:
            first = audio[0]
            run.t0 = first.capture_start - first.offset / first.rate
        run.source_s = _duration(run.selected.clip.audio) or run.selected.clip.duration_s
        run.transcripts = await committed_texts(self.r, self.keys.stream("transcript", part))
        run.translations = await committed_texts(
            self.r, self.keys.stream("translation", Partition(run.room, run.session, lang)))
        speech = {e.id: e.event for e in await read_all(
            self.r, self.keys.room_stream("speech", run.room, lang), session=run.session)
            if isinstance(e.event, Speech)}
        for p in played:
            event = speech.get(p.entry_id)
            if p.session != run.session or event is None:
                continue
            run.pieces.append(Piece(p.seq, p.part, p.text, p.available, p.started,
                                    p.duration, event))
        if not run.t0 and run.pieces:
            run.t0 = run.pieces[0].event.capture_start


def _duration(path: Path) -> float:
    try:
        import soundfile

        return float(soundfile.info(str(path)).duration)
    except Exception:  # not a format soundfile reads (the capture agent used ffmpeg)
        return 0.0
