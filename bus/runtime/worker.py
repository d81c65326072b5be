"""The Worker: wires the runtime's parts together and runs its loops.

:class:`Worker` owns the shared state (the :class:`~bus.runtime.ownership.Holdings`, the
commit queue, the wake-up events) and the loops around it:

* *discovery* reads the registry (and wakes on announcements), ends silent sessions
  (:meth:`bus.registry.Registry.expire_silent`), and lets the planner
  (bus/runtime/planner.py) say what to acquire and what to shed;
* *heartbeat* renews the leases (bus/runtime/leases.py) and publishes the stage's health;
* *fetch* (bus/runtime/reading.py), the stream tasks (bus/runtime/partition.py), the
  *committer* (bus/runtime/committer.py) and the handler *watchdog*;
* *lag* and *retention* (bus/retention.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
from typing import Any

from redis.exceptions import RedisError

from bus import clock
from bus.connection import AnyRedis, connect
from bus.keys import Keys, Partition
from bus.logs import get_logger
from bus.metrics import LAG, LOOP_ERRORS, PENDING, SESSIONS_EXPIRED, serve_metrics
from bus.middleware import Middleware, default_middleware
from bus.registry import Registry, SessionInfo
from bus.retention import RetentionSweeper
from bus.runtime import planner
from bus.runtime.commit_ops import Call, CommitTarget
from bus.runtime.committer import Committer, run_scripts
from bus.runtime.leases import Leases
from bus.runtime.ownership import Holdings, Owned, OwnershipState
from bus.runtime.partition import StreamTasks
from bus.runtime.reading import Reader, read_fenced
from bus.scripts import Scripts
from bus.settings import BusSettings
from bus.stage import Stage
from bus.text import as_text
from bus.topology import Topology

log = get_logger("s2st.runtime")


class Worker:
    """Runs ``stage`` until stopped (SIGTERM/SIGINT or :meth:`stop`).

    ``topology``: the pipeline's declared topology; the stage may write only its families
    (bus/topology.py). ``root_family``: the stream family the sessions' source writes (where a
    session that went silent gets its end marker); by default the topology's root; None
    without a topology: this worker ends no silent session."""

    def __init__(
        self,
        stage: Stage,
        settings: BusSettings | None = None,
        *,
        client: AnyRedis | None = None,
        middleware: list[Middleware] | None = None,
        topology: Topology | None = None,
        root_family: str | None = None,
    ) -> None:
        if not stage.input_family:
            raise ValueError(f"stage {stage.name!r} names no input_family (the family it reads)")
        self.stage = stage
        self.topology = topology  # the stage may write only its families (bus/topology.py)
        if topology is not None:
            topology.check_input(stage.name, stage.input_family, stage.per_lang)
            if root_family is None:
                root_family = topology.root.name
        self.settings = settings or BusSettings()
        self.keys: Keys = self.settings.keys
        self.worker_id = self.settings.worker_id
        self.group = stage.name
        self.root_family = root_family
        self.middleware = default_middleware() if middleware is None else middleware
        self._own_client = client is None
        self.r: AnyRedis = client
        self.holdings = Holdings()
        self.owned: dict[Partition, Owned] = self.holdings.owned
        self._stop = asyncio.Event()
        self._discover_now = asyncio.Event()
        self._fetch_wake = asyncio.Event()
        self._capacity = asyncio.Event()  # commits freed in-flight room
        self._tasks: list[asyncio.Task[None]] = []
        self._sessions: dict[tuple[str, str], SessionInfo] = {}
        self._targets: dict[str, list[str]] = {}
        self.metrics_port: int | None = None
        self._redis_trouble = 0.0  # last time Redis could not be reached
        self._loop_errors: set[tuple[str, str, str]] = set()  # unexpected ones logged already
        self._health_sent = ""  # the stage's health record as last written ("": none)
        # Set just before the loops are cancelled: on Python 3.11 asyncio.wait_for (which
        # redis-py wraps every command in) can swallow a cancellation, so each loop also
        # checks its flag before going round again.
        self._intake_closed = False  # discovery and announcements
        self._loops_closed = False  # everything else
        self.started = asyncio.Event()

    @property
    def _finished_cache(self) -> set[Partition]:
        """The streams known to be finished (never taken again)."""
        return self.holdings.finished

    # -- public ----------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        """Run until stopped. ``handle_signals``: this worker is its process's main work (the
        command line): SIGTERM and SIGINT stop it, and what the start made (imports, models)
        is frozen out of the garbage collector (see :func:`_freeze_startup_objects`)."""
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        if self.r is None:
            client = await self._connect_unless_stopped()
            if client is None:
                log.info("worker stopped before Redis answered", stage=self.group)
                return
            self.r = client
        self._wire()
        if self.settings.metrics_port is not None:
            self.metrics_port = serve_metrics(self.settings.metrics_port)
        try:
            await self.stage.setup()
        except BaseException:
            if self._own_client:
                with contextlib.suppress(Exception):
                    await self.r.aclose()
            raise
        if handle_signals:
            _freeze_startup_objects()
        log.info("worker started", stage=self.group, worker=self.worker_id,
                 metrics_port=self.metrics_port, **clock.log_fields())
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._discovery_loop(), name="discovery"),
            asyncio.create_task(self._announce_loop(), name="announce"),
            asyncio.create_task(self.committer.run(), name="committer"),
            asyncio.create_task(self.reader.supervise(), name="fetch"),
            asyncio.create_task(self._lag_loop(), name="lag"),
            asyncio.create_task(self._retention_loop(), name="retention"),
            asyncio.create_task(self.streams.watchdog(self._closed), name="watchdog"),
        ]
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            await self._shutdown()

    def _wire(self) -> None:
        """Build the parts on the connected client."""
        settings, family = self.settings, self.stage.input_family
        self.scripts = Scripts(self.r)
        self.registry = Registry(self.r, self.keys, cluster=settings.redis_cluster)
        self._sweeper = RetentionSweeper(
            self.r, self.keys, stage=self.group, family=family, per_lang=self.stage.per_lang,
            retention_s=settings.retention_s, scripts=self.scripts)
        self.leases = Leases(self.r, self.scripts, self.holdings, settings, group=self.group,
                             family=family, topology=self.topology)
        self.committer = Committer(
            self.holdings,
            CommitTarget(self.keys, self.group, self.worker_id, family,
                         retention_s=settings.retention_s, maxlen=settings.maxlen),
            cluster=settings.redis_cluster, middleware=self.middleware,
            capacity=self._capacity, send=self._send_commit, closed=self._closed)
        self.reader = Reader(self.r, self.holdings, settings, read_fenced=self._read_fenced,
                             capacity=self._capacity, wake=self._fetch_wake, closed=self._closed)
        self.streams = StreamTasks(
            self.stage, self.holdings, r=self.r, scripts=self.scripts, settings=settings,
            middleware=self.middleware, commits=self.committer.queue,
            fetch_wake=self._fetch_wake, capacity=self._capacity, release=self._release)

    def _closed(self) -> bool:
        return self._loops_closed

    async def _connect_unless_stopped(self) -> AnyRedis | None:
        """Connect, waiting up to ``redis_wait_s`` for a Redis that does not answer yet;
        None when the worker is stopped meanwhile (nothing has started: nothing to drain)."""
        connecting = asyncio.create_task(connect(self.settings, wait_s=self.settings.redis_wait_s))
        stopping = asyncio.create_task(self._stop.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            return None
        return connecting.result()

    # -- overridable I/O (tests slow these down or drop their replies) -------------------
    async def _read_fenced(self, keys: list[str], count: int, starts: list[str]) -> list[Any]:
        """One fenced read (bus/lua/fetch.lua) of (lease, stream) pairs ``keys``, each stream
        after its id in ``starts`` (">": new entries)."""
        return await read_fenced(self.scripts, self.group, self.worker_id, keys, count, starts)

    async def _send_commit(self, calls: list[Call]) -> list[Any]:
        return await run_scripts(self.r, self.scripts, self.settings.redis_cluster,
                                 self.scripts.commit, calls)

    # -- shutdown --------------------------------------------------------------
    async def _shutdown(self) -> None:
        log.info("worker stopping: draining", stage=self.group, worker=self.worker_id,
                 streams=len(self.owned))
        # no new streams from here on
        intake = [t for t in self._tasks if t.get_name() in ("discovery", "announce")]
        self._intake_closed = True
        for task in intake:
            task.cancel()
        await asyncio.wait(intake, timeout=5)
        for owned in list(self.owned.values()):
            owned.give_up(owned.closing or OwnershipState.STOPPED)
        tasks = [o.task for o in self.owned.values() if o.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.handler_timeout_s)
        # let the committer write what is queued, then stop the loops
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._commit_drained(), timeout=10)
        loops = [*self._tasks, *self.reader.fetchers.values()]
        self._loops_closed = True
        for task in loops:
            task.cancel()
        _done, stuck = await asyncio.wait(loops, timeout=5)
        if stuck:
            log.warning("loops did not stop", loops=sorted(t.get_name() for t in stuck))
        for owned in list(self.owned.values()):
            await self._release(owned, owned.closing or OwnershipState.STOPPED)
        with contextlib.suppress(RedisError, OSError):
            await self.leases.leave()
            if self._health_sent:
                await self.r.hdel(self.keys.health(self.group), self.worker_id)
        await self.stage.teardown()
        if self._own_client:
            with contextlib.suppress(Exception):
                await self.r.aclose()
        log.info("worker stopped", stage=self.group, worker=self.worker_id)

    async def _commit_drained(self) -> None:
        while not self.committer.drained():
            await asyncio.sleep(0.01)

    # -- leases and membership ----------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        period = self.settings.heartbeat_ms / 1000
        while not self._loops_closed:
            try:
                await self.leases.renew()
            except (RedisError, OSError) as exc:
                self._redis_trouble = clock.now()
                log.warning("heartbeat failed", error=str(exc))
            else:
                await self._publish_health()
            await asyncio.sleep(period)

    async def _publish_health(self) -> None:
        """Write the stage's health record (``P:health:<stage>``, field: this worker) when it
        changed, for `s2st status`; remove it when it empties. Records of workers gone from
        ``P:workers:<stage>`` are removed on the way (a record is written a few times in a
        worker's life, not at every heartbeat)."""
        try:
            health = self.stage.health()
            text = json.dumps(health, sort_keys=True, default=str) if health else ""
        except Exception as exc:
            self._round_failed("health", "stage health failed", exc)
            return
        if text == self._health_sent:
            return
        key = self.keys.health(self.group)
        try:
            if not text:
                await self.r.hdel(key, self.worker_id)
            else:
                await self.r.hset(key, self.worker_id, text)
                known = {as_text(m) for m in await self.r.zrangebyscore(
                    self.keys.workers(self.group), "-inf", "+inf")}
                gone = [f for f in map(as_text, await self.r.hgetall(key)) if f not in known
                        and f != self.worker_id]
                if gone:
                    await self.r.hdel(key, *gone)
        except (RedisError, OSError) as exc:  # tried again at the next heartbeat
            # (an ACL file made before P:health existed refuses it: said once, not per beat)
            self._round_failed("health", "health record not written", exc)
            return
        self._health_sent = text

    async def _try_acquire(self, part: Partition, info: SessionInfo) -> bool:
        if self._stop.is_set():
            return False
        owned = await self.leases.acquire(part, info, self._targets.get(part.room, []))
        if owned is None:
            return False
        self.holdings.add(owned)
        for mw in self.middleware:
            mw.on_acquire(self.group, part)
        self.streams.start(owned)
        return True

    async def _release(self, owned: Owned, reason: str) -> None:
        if not self.holdings.remove(owned):
            return
        with contextlib.suppress(Exception):
            await self.stage.on_release(owned.ctx)
        await self.leases.release(owned, reason)
        if owned.finished:
            self.holdings.finished.add(owned.part)
        for mw in self.middleware:
            mw.on_release(self.group, owned.part, reason)

    # -- discovery -------------------------------------------------------------------
    async def _announce_loop(self) -> None:
        """Wake discovery as soon as a session or target language is announced."""
        last = "$"
        while not self._intake_closed:
            try:
                reply = await self.r.xread({self.keys.announce: last}, block=1000, count=100)
                if reply:
                    last = as_text(reply[0][1][-1][0])
                    self._discover_now.set()
            except (RedisError, OSError) as exc:
                log.debug("announce read failed", error=str(exc))
                await asyncio.sleep(1)

    async def _discovery_loop(self) -> None:
        period = self.settings.discovery_ms / 1000
        while not self._intake_closed:
            try:
                await self._discover()
            except (RedisError, OSError) as exc:
                self._redis_trouble = clock.now()
                log.warning("discovery failed", error=str(exc))
            except Exception as exc:
                # The last line of defence (the registry skips bad entries itself): a round
                # that raises something else is lost, not the worker's discovery.
                self._round_failed("discovery", "discovery round failed", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._discover_now.wait(), timeout=period)
            self._discover_now.clear()

    async def _discover(self) -> None:
        """One discovery round: the I/O around the planner's decisions."""
        now = clock.now()
        snapshot = await self.registry.snapshot(await self.registry.rooms(), now)
        by_session: dict[tuple[str, str], list[Owned]] = {}
        for owned in self.owned.values():
            by_session.setdefault((owned.part.room, owned.part.session), []).append(owned)
        for room, (targets, infos) in snapshot.items():
            self._targets[room] = targets
            for info in infos:
                self._sessions[(room, info.session)] = info
                for owned in by_session.get((room, info.session), ()):
                    owned.ctx.session = info
                    owned.ctx.targets = targets  # a listener joined or left
        timeout = self.settings.session_timeout_s
        if self.root_family is not None and now - self._redis_trouble > timeout:
            # (not right after an outage: the capture agents need time to catch up)
            for info in await self.registry.expire_silent(snapshot, self.root_family, timeout,
                                                          now):
                SESSIONS_EXPIRED.labels(self.group).inc()
                log.warning("session ended: no heartbeat", room=info.room, session=info.session)
        wanted = planner.wanted(snapshot, self.holdings.finished, self.stage.per_lang)
        # Held streams no longer registered: nothing will come; the stream is given up (what
        # it holds stays pending) instead of being held for ever.
        for room, session in planner.removed_sessions(self.owned, snapshot):
            for owned in by_session[(room, session)]:
                if not owned.closing:
                    self._sessions.pop((room, session), None)
                    owned.give_up(OwnershipState.REMOVED)
        # drop the ones finished (end of stream handled by someone); ours are not
        ours, others = planner.split_held(wanted, self.owned)
        if others:
            pipe = self.r.pipeline(transaction=False)
            for part, _ in others:
                pipe.hexists(self.keys.progress(part.room), self.leases.fin_field(part))
            finished = await pipe.execute()
            for (part, _), fin in zip(others, finished, strict=True):
                if fin:
                    self.holdings.finished.add(part)
            others = [(p, i) for (p, i), fin in zip(others, finished, strict=True) if not fin]
        wanted = others + ours
        live = await self.leases.live_workers() if wanted else 1
        plan = planner.plan(wanted, [planner.Held(o.part, bool(o.closing))
                                     for o in self.owned.values()], live)
        for part in plan.shed:  # so that others can take them
            self.owned[part].give_up(OwnershipState.SHED)
        capacity = plan.capacity
        for part, info in plan.candidates:
            if capacity <= 0:
                break
            if await self._try_acquire(part, info):
                capacity -= 1

    # -- retention ----------------------------------------------------------------------
    async def _retention_loop(self) -> None:
        """Sweep the inputs of sessions that ended a retention window ago (bus/retention.py)."""
        keep = self.settings.retention_s
        if keep <= 0:
            return
        finished = self.holdings.finished
        while not self._loops_closed:
            await asyncio.sleep(min(60.0, max(0.2, keep / 4)))
            try:
                for room in await self.registry.rooms():
                    swept, forgotten = await self._sweeper.sweep(
                        room, await self.registry.sessions(room), self._targets.get(room, []),
                        busy=set(self.owned))
                    finished |= swept
                    if forgotten:
                        finished -= {p for p in finished
                                     if p.room == room and p.session in forgotten}
                        for sid in forgotten:
                            self._sessions.pop((room, sid), None)
                    if swept or forgotten:
                        log.info("retention: expired sessions swept", room=room,
                                 streams=len(swept), forgotten=len(forgotten))
            except (RedisError, OSError) as exc:
                log.warning("retention sweep failed", error=str(exc))
            except Exception as exc:
                self._round_failed("retention", "retention sweep failed", exc)

    def _round_failed(self, loop: str, event: str, exc: Exception) -> None:
        """One round of ``loop`` raised something unexpected (call it from the ``except``):
        counted; logged with its traceback the first time only (the same error again at every
        round would flood the log); the loop goes on at its next round."""
        LOOP_ERRORS.labels(self.group, loop).inc()
        seen = (loop, type(exc).__name__, str(exc)[:200])
        if seen in self._loop_errors:
            return
        if len(self._loop_errors) >= 1000:
            self._loop_errors.clear()
        self._loop_errors.add(seen)
        log.error(event, stage=self.group, worker=self.worker_id, error=repr(exc),
                  exc_info=True)

    # -- lag --------------------------------------------------------------------------
    async def _lag_loop(self) -> None:
        while not self._loops_closed:
            await asyncio.sleep(5)
            lag = pending = 0
            keys = [o.key for o in self.owned.values()]
            try:
                pipe = self.r.pipeline(transaction=False)
                for key in keys:
                    pipe.xinfo_groups(key)
                replies = await pipe.execute(raise_on_error=False) if keys else []
            except (RedisError, OSError):
                continue
            for groups in replies:
                if isinstance(groups, Exception):
                    continue  # (a stream deleted meanwhile)
                for g in groups:
                    if as_text(g.get("name", b"")) == self.group:
                        lag += int(g.get("lag") or 0)
                        pending += int(g.get("pending") or 0)
            LAG.labels(self.group).set(lag)
            PENDING.labels(self.group).set(pending)


def _freeze_startup_objects() -> None:
    """Move every object alive now (modules, a stage's model) to the collector's permanent
    generation. Python's full collections walk every tracked object: 12 ms for a relay
    worker's 60,000, 35 ms with faster-whisper and torch loaded, each a stall of every stream
    the worker owns (a hop's p99 is a few milliseconds). Objects made later are collected as
    before; what startup left as garbage is collected first."""
    gc.collect()
    gc.freeze()
