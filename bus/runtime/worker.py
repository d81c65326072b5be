"""The consumer runtime: a stage plugged into Redis Streams.

One :class:`Worker` runs one stage.  Per-session order with horizontal scale:
each input stream (a session, or a session and language) is owned by one
worker at a time through an expiring lease; many streams spread over many
workers, each taking about its fair share.  Inside a worker:

* the *discovery* loop reads the registry (and wakes on announcements),
  acquires leases on unowned streams up to the fair share, sheds extras, and
  ends sessions whose capture agent went silent;
* the *heartbeat* loop renews leases; a lease it cannot renew is dropped at
  once (another worker may have it); it also publishes the stage's health
  record (``Stage.health``) when it changes;
* *fetch* loops read all owned streams with one XREADGROUP per hash slot and
  queue entries per stream;
* one task per owned stream hands its entries, in order, to the stage;
* the *committer* gathers what the streams produced and writes it with one
  script call per room: lease check (fencing), outputs (deduplicated by
  session, stage, seq, part), input watermark and XACK, all atomic.

On acquiring a stream the worker claims the pending entries left by the
previous owner (XAUTOCLAIM) and handles them first.  An entry that keeps
failing (``max_attempts``, counting deliveries to workers that died on it) or
that does not decode goes to the room's dead-letter stream and is acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import random
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.exceptions import NoScriptError, RedisError, ResponseError

from bus import clock
from bus.connection import AnyRedis, connect
from bus.events import DeadLetter, Event, MalformedEvent, decode_event
from bus.keys import BELL_MAXLEN, Keys, Partition
from bus.logs import get_logger
from bus.metrics import LAG, LOOP_ERRORS, PENDING, SESSIONS_EXPIRED, serve_metrics
from bus.middleware import Middleware, default_middleware
from bus.registry import Registry, SessionInfo, partitions_for
from bus.retention import RetentionSweeper
from bus.scripts import Scripts
from bus.settings import BusSettings
from bus.stage import Delivery, Emit, PartitionContext, Reject, Stage

log = get_logger("s2st.runtime")

_WORKER_TTL_FACTOR = 3  # a worker stays in the worker set this many lease TTLs after a heartbeat
_KEPT_OF_OVERSIZED = 1024  # bytes of each field an oversized entry's dead letter keeps
_TURN_S = 0.002  # a stream's task hands the loop on after handling entries this long
_ITEMS_PER_CALL = 250  # commit items per script call on a plain Redis (about 15 ms of Redis)


@dataclass
class _Entry:
    entry_id: str
    fields: list[Any] | None  # flat [name, value, ...] as Redis returns it; None: trimmed
    attempts: int = 0


@dataclass
class _CommitItem:
    owned: _Owned
    entry_id: str | None
    emits: list[Emit]
    dead: DeadLetter | None = None
    finish: bool = False
    done: asyncio.Future[bool] | None = None  # set when the caller waits for the commit

    def waited(self) -> _CommitItem:
        self.done = asyncio.get_running_loop().create_future()
        return self


class _Owned:
    """A stream this worker holds the lease of."""

    def __init__(self, part: Partition, key: str, lease_key: str, ctx: PartitionContext,
                 bell: str) -> None:
        self.part = part
        self.key = key
        self.lease_key = lease_key
        self.ctx = ctx
        self.queue: deque[_Entry] = deque()
        self.inflight = 0  # read from Redis, not yet committed
        self.ready = False  # recovery done: the fetch loop may read new entries
        self.closing: str | None = None  # why it is being given up
        self.finished = False
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.slot = ""
        self.deadline: float | None = None  # perf_counter() by which the running handler ends
        self.timed_out = False  # the watchdog cancelled the handler
        self.wm_field = ""  # this stream's watermark field in the room's progress hash
        self.dedup_fields: dict[str, str] = {}  # output key -> its dedup field
        self.maybe_more = True  # the stream may hold entries this worker has not read yet
        self.bell = bell  # rung by whoever writes to the stream
        self.bells: dict[str, str | None] = {}  # output key -> its bell
        self.last_read = "0-0"  # the last entry queued (read or recovered) by this ownership
        self.reread = False  # a read's reply was lost: read our own pending ones again


class Worker:
    """Runs ``stage`` until stopped (SIGTERM/SIGINT or :meth:`stop`)."""

    def __init__(
        self,
        stage: Stage,
        settings: BusSettings | None = None,
        *,
        client: AnyRedis | None = None,
        middleware: list[Middleware] | None = None,
    ) -> None:
        self.stage = stage
        self.settings = settings or BusSettings()
        self.keys: Keys = self.settings.keys
        self.worker_id = self.settings.worker_id
        self.group = stage.name
        self.middleware = default_middleware() if middleware is None else middleware
        self._client = client
        self._own_client = client is None
        self.r: AnyRedis = client
        self.owned: dict[Partition, _Owned] = {}
        self._by_key: dict[str, _Owned] = {}
        self._commit_q: asyncio.Queue[_CommitItem] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._discover_now = asyncio.Event()
        self._fetch_wake = asyncio.Event()
        self._capacity = asyncio.Event()  # commits freed in-flight room
        self._fetchers: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._sessions: dict[tuple[str, str], SessionInfo] = {}
        self._targets: dict[str, list[str]] = {}
        self._finished_cache: set[Partition] = set()
        self._commits_sent = 0  # commit round trips sent, and come back (or failed)
        self._commits_back = 0
        self._fetches_sent = 0  # fenced reads sent, and come back (or failed)
        self._fetches_back = 0
        self._lost_at: dict[Partition, tuple[int, int]] = {}  # lost: commits, reads sent by then
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
        self.scripts = Scripts(self.r)
        self.registry = Registry(self.r, self.keys, cluster=self.settings.redis_cluster)
        self._sweeper = RetentionSweeper(
            self.r, self.keys, stage=self.group, family=self.stage.input_family,
            per_lang=self.stage.per_lang, retention_s=self.settings.retention_s,
            scripts=self.scripts)
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
            asyncio.create_task(self._committer(), name="committer"),
            asyncio.create_task(self._fetch_supervisor(), name="fetch"),
            asyncio.create_task(self._lag_loop(), name="lag"),
            asyncio.create_task(self._retention_loop(), name="retention"),
            asyncio.create_task(self._watchdog_loop(), name="watchdog"),
        ]
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            await self._shutdown()

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
            owned.closing = owned.closing or "stopped"
            owned.wake.set()
        tasks = [o.task for o in self.owned.values() if o.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.handler_timeout_s)
        # let the committer write what is queued, then stop the loops
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._commit_drained(), timeout=10)
        loops = [*self._tasks, *self._fetchers.values()]
        self._loops_closed = True
        for task in loops:
            task.cancel()
        _done, stuck = await asyncio.wait(loops, timeout=5)
        if stuck:
            log.warning("loops did not stop", loops=sorted(t.get_name() for t in stuck))
        for owned in list(self.owned.values()):
            await self._release(owned, owned.closing or "stopped")
        with contextlib.suppress(RedisError, OSError):
            await self.r.zrem(self.keys.workers(self.group), self.worker_id)
            if self._health_sent:
                await self.r.hdel(self.keys.health(self.group), self.worker_id)
        await self.stage.teardown()
        if self._own_client:
            with contextlib.suppress(Exception):
                await self.r.aclose()
        log.info("worker stopped", stage=self.group, worker=self.worker_id)

    async def _commit_drained(self) -> None:
        while not self._commit_q.empty() or any(o.inflight for o in self.owned.values()):
            await asyncio.sleep(0.01)

    # -- leases and membership ----------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        period = self.settings.heartbeat_ms / 1000
        ttl = self.settings.lease_ttl_ms
        while not self._loops_closed:
            try:
                # one round trip for all rooms: under load each round trip waits for the loop
                # behind every busy stream, and a renewal must not take a lease TTL
                # one script call per room on a cluster, one for all on a plain Redis
                groups: list[list[_Owned]] = []
                if self.settings.redis_cluster:
                    by_room: dict[str, list[_Owned]] = {}
                    for owned in self.owned.values():
                        by_room.setdefault(owned.part.room, []).append(owned)
                    groups = list(by_room.values())
                elif self.owned:
                    groups = [list(self.owned.values())]
                workers = self.keys.workers(self.group)
                replies = await self._run_scripts(
                    self.scripts.renew,
                    [([o.lease_key for o in group], [self.worker_id, ttl]) for group in groups],
                    lambda c, key=workers: c.zadd(key, {self.worker_id: clock.now()}))
                for group, ok in zip(groups, replies[1:], strict=True):
                    for owned, kept in zip(group, ok, strict=True):
                        if not int(kept):
                            self._lose(owned)
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
                known = {_s(m) for m in await self.r.zrangebyscore(
                    self.keys.workers(self.group), "-inf", "+inf")}
                gone = [f for f in map(_s, await self.r.hgetall(key)) if f not in known
                        and f != self.worker_id]
                if gone:
                    await self.r.hdel(key, *gone)
        except (RedisError, OSError) as exc:  # tried again at the next heartbeat
            # (an ACL file made before P:health existed refuses it: said once, not per beat)
            self._round_failed("health", "health record not written", exc)
            return
        self._health_sent = text

    def _lose(self, owned: _Owned) -> None:
        """Our lease is gone: stop at once, keep nothing, write nothing more."""
        if owned.closing == "lost":
            return
        owned.closing = "lost"
        owned.queue.clear()
        owned.wake.set()
        # The lease holds our worker id, so once this worker takes the stream again, a commit
        # of what it did before the loss, or a read it sent before, would pass the fence (and
        # a read landing in the middle of the new owner's recovery puts new entries before
        # the pending ones: the watermark then skips those). Nothing of this ownership is
        # committed or queued from now on, and the stream is not taken again until every
        # commit and read already sent has come back.
        self._lost_at[owned.part] = (self._commits_sent, self._fetches_sent)

    async def _live_workers(self) -> int:
        """Workers of this stage that heartbeated within one lease TTL: one that did not has
        lost its leases too, and counting it would keep the others at a share too small to
        take over its streams. Entries are removed after a few TTLs (status shows them)."""
        now = clock.now()
        ttl = self.settings.lease_ttl_ms / 1000
        key = self.keys.workers(self.group)
        pipe = self.r.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", now - _WORKER_TTL_FACTOR * ttl)
        pipe.zcount(key, now - ttl, "+inf")
        _removed, fresh = await pipe.execute()
        return max(1, int(fresh))

    # -- discovery -------------------------------------------------------------------
    async def _announce_loop(self) -> None:
        """Wake discovery as soon as a session or target language is announced."""
        last = "$"
        while not self._intake_closed:
            try:
                reply = await self.r.xread({self.keys.announce: last}, block=1000, count=100)
                if reply:
                    last = _s(reply[0][1][-1][0])
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
        now = clock.now()
        wanted: list[tuple[Partition, SessionInfo]] = []
        snapshot = await self.registry.snapshot(await self.registry.rooms(), now)
        owned_by_session: dict[tuple[str, str], list[_Owned]] = {}
        for owned in self.owned.values():
            owned_by_session.setdefault((owned.part.room, owned.part.session), []).append(owned)
        for room, (targets, infos) in snapshot.items():
            self._targets[room] = targets
            for info in infos:
                self._sessions[(room, info.session)] = info
                for owned in owned_by_session.pop((room, info.session), ()):
                    owned.ctx.session = info
                    owned.ctx.targets = targets  # a listener joined or left
                if (info.active and now - info.last_seen > self.settings.session_timeout_s
                        and now - self._redis_trouble > self.settings.session_timeout_s):
                    # (not right after an outage: the capture agents need time to catch up)
                    audio = self.keys.stream("audio", Partition(room, info.session))
                    if await self.registry.expire_stale(info, self.settings.session_timeout_s,
                                                        audio, now):
                        SESSIONS_EXPIRED.labels(self.group).inc()
                        log.warning("session ended: no heartbeat", room=room,
                                    session=info.session)
                for part in partitions_for(info, targets, self.stage.per_lang):
                    if part not in self._finished_cache:
                        wanted.append((part, info))
        # What is left is no longer registered: a capture agent that failed before its first
        # chunk removed its session again, or the room was deleted. Nothing will come; the
        # stream is given up (what it holds stays pending) instead of being held for ever.
        for (room, session), gone in owned_by_session.items():
            for owned in gone:
                if not owned.closing:
                    self._sessions.pop((room, session), None)
                    owned.closing = "removed"
                    owned.wake.set()
        # drop the ones finished (end of stream handled by someone); ours are not
        ours = [(p, i) for p, i in wanted if p in self.owned]
        others = [(p, i) for p, i in wanted if p not in self.owned]
        if others:
            pipe = self.r.pipeline(transaction=False)
            for part, _ in others:
                pipe.hexists(self.keys.progress(part.room), self._fin_field(part))
            finished = await pipe.execute()
            for (part, _), fin in zip(others, finished, strict=True):
                if fin:
                    self._finished_cache.add(part)
            others = [(p, i) for (p, i), fin in zip(others, finished, strict=True) if not fin]
        wanted = others + ours
        share = math.ceil(len(wanted) / await self._live_workers()) if wanted else 0
        mine = [o for o in self.owned.values() if not o.closing]
        # shed extras (the most recently acquired first) so others can take them
        excess = len(mine) - share
        for owned in reversed(mine):
            if excess <= 0:
                break
            owned.closing = "shed"
            owned.wake.set()
            excess -= 1
        # acquire unowned ones up to the share
        capacity = share - len([o for o in self.owned.values() if not o.closing])
        candidates = [(p, i) for p, i in wanted if p not in self.owned]
        random.shuffle(candidates)
        for part, info in candidates:
            if capacity <= 0:
                break
            if await self._try_acquire(part, info):
                capacity -= 1

    async def _try_acquire(self, part: Partition, info: SessionInfo) -> bool:
        if self._stop.is_set():
            return False
        lease_key = self.keys.lease(self.group, self.stage.input_family, part)
        if part in self._finished_cache:
            return False
        key = self.keys.stream(self.stage.input_family, part)
        missing = not info.active and not await self.r.exists(key)
        if missing and clock.now() - (info.ended or info.last_seen or info.started) \
                <= self._never_after_s:
            # The session ended and nothing was written here yet. An upstream stage may still
            # be working on it (a short session captured or replayed faster than real time
            # ends before its first transcript exists): look again at the next discovery.
            return False
        lost_at = self._lost_at.get(part)
        if lost_at is not None:
            if self._commits_back < lost_at[0] or self._fetches_back < lost_at[1]:
                return False  # a commit or read of the lost ownership may be on its way
            del self._lost_at[part]
        got = await self.r.set(lease_key, self.worker_id, nx=True, px=self.settings.lease_ttl_ms)
        if not got:
            return False
        # it may have finished since this discovery round looked (here or elsewhere)
        if part in self._finished_cache or await self.r.hexists(
                self.keys.progress(part.room), self._fin_field(part)):
            self._finished_cache.add(part)
            await self.scripts.release(keys=[lease_key], args=[self.worker_id])
            return False
        if missing and not await self.r.exists(key):
            # ended so long ago that the stream would have been trimmed: nothing to do, ever
            await self.r.hset(self.keys.progress(part.room), self._fin_field(part), "1")
            await self.scripts.release(keys=[lease_key], args=[self.worker_id])
            self._finished_cache.add(part)
            return False
        ctx = PartitionContext(
            stage=self.group, worker_id=self.worker_id, family=self.stage.input_family,
            partition=part, keys=self.keys, client=self.r, session=info,
            targets=self._targets.get(part.room, []),
        )
        owned = _Owned(part, key, lease_key, ctx, self.keys.bell_of(key) or key)
        owned.wm_field = self._wm_field(part)
        ctx._publish = lambda emits: self._publish_now(owned, emits)
        owned.slot = part.room if self.settings.redis_cluster else "*"
        self.owned[part] = owned
        self._by_key[key] = owned
        for mw in self.middleware:
            mw.on_acquire(self.group, part)
        owned.task = asyncio.create_task(self._run_partition(owned), name=f"stream {part}")
        return True

    async def _release(self, owned: _Owned, reason: str) -> None:
        if self.owned.get(owned.part) is not owned:
            return
        del self.owned[owned.part]
        self._by_key.pop(owned.key, None)
        with contextlib.suppress(Exception):
            await self.stage.on_release(owned.ctx)
        if reason != "lost":
            with contextlib.suppress(RedisError, OSError):
                await self.scripts.release(keys=[owned.lease_key], args=[self.worker_id])
        if owned.finished:
            self._finished_cache.add(owned.part)
        for mw in self.middleware:
            mw.on_release(self.group, owned.part, reason)

    # -- one owned stream ---------------------------------------------------------
    async def _run_partition(self, owned: _Owned) -> None:
        try:
            await self._recover(owned)
            owned.ready = True
            self._fetch_wake.set()
            self._capacity.set()
            tick = self.stage.tick_interval_s
            turn_ends = time.perf_counter() + _TURN_S
            while True:
                if owned.closing == "lost":
                    break
                if not owned.queue:
                    if owned.closing or owned.finished:
                        break
                    owned.wake.clear()
                    if tick is None:
                        await owned.wake.wait()  # (no wait_for: this runs per event)
                    else:
                        try:
                            await asyncio.wait_for(owned.wake.wait(), timeout=tick)
                        except TimeoutError:
                            await self._tick(owned)
                    turn_ends = time.perf_counter() + _TURN_S
                    continue
                entry = owned.queue.popleft()
                owned.ctx.more_pending = bool(owned.queue)
                await self._handle_entry(owned, entry)
                if self._commit_q.qsize() == 1 or time.perf_counter() > turn_ends:
                    # Let the others run: the committer, if it is idle, starts writing this
                    # one now (group commit: what we handle meanwhile goes into its next round
                    # trip); and a stream with a long queue (and a handler that never waits)
                    # must not hold the loop, or the other streams, the committer and the
                    # heartbeat (the leases!) wait behind it.
                    await asyncio.sleep(0)
                    turn_ends = time.perf_counter() + _TURN_S
            # wait until what we produced is written before giving the lease back
            while owned.inflight > len(owned.queue) and owned.closing != "lost":
                await asyncio.sleep(0.005)
            # (nothing is queued once the task has left its loop; if something were, it would
            # stay pending for the next owner rather than hold the stream for ever)
            owned.inflight -= len(owned.queue)
            owned.queue.clear()
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            log.warning("stream task lost Redis; giving the stream up", part=str(owned.part),
                        error=str(exc))
            owned.closing = "lost"
        except Exception:
            log.exception("stream task crashed; giving the stream up", part=str(owned.part))
            owned.closing = "error"
        await self._release(owned, "finished" if owned.finished else (owned.closing or "done"))

    async def _recover(self, owned: _Owned) -> None:
        """Create the group if needed, rebuild stage state, take over pending entries."""
        try:
            await self.r.xgroup_create(owned.key, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await self.stage.on_acquire(owned.ctx)
        _claimed, deleted = await self.scripts.claim(keys=[owned.key],
                                                     args=[self.group, self.worker_id])
        for _ in range(int(deleted)):  # Redis 7 drops trimmed pending entries while claiming
            for mw in self.middleware:
                mw.on_trimmed(self.group, owned.part, "?")
        start = "-"
        while True:
            pending = await self.r.xpending_range(owned.key, self.group, min=start, max="+",
                                                  count=1000, consumername=self.worker_id)
            if not pending:
                break
            counts = {_s(p["message_id"]): int(p["times_delivered"]) for p in pending}
            first = _s(pending[0]["message_id"])
            reply = await self.r.xreadgroup(self.group, self.worker_id,
                                            {owned.key: _before(first)}, count=len(pending))
            entries = reply[0][1] if reply else []
            for entry_id, fields in entries:
                eid = _s(entry_id)
                if eid not in counts:
                    continue
                flat = [x for pair in fields.items() for x in pair] if fields else None
                owned.queue.append(_Entry(eid, flat, attempts=counts[eid]))
                owned.inflight += 1
                owned.last_read = eid
            last = _s(pending[-1]["message_id"])
            start = "(" + last
            if len(pending) < 1000:
                break

    async def _tick(self, owned: _Owned) -> None:
        if owned.closing:
            return
        try:
            emits = await self.stage.on_tick(owned.ctx, clock.now())
        except Exception as exc:
            log.warning("tick failed", part=str(owned.part), error=f"{type(exc).__name__}: {exc}")
            return
        if emits:
            owned.inflight += 1
            self._commit_q.put_nowait(_CommitItem(owned, None, emits))

    async def _publish_now(self, owned: _Owned, emits: list[Emit]) -> bool:
        if owned.closing == "lost":
            return False
        owned.inflight += 1
        item = _CommitItem(owned, None, list(emits)).waited()
        self._commit_q.put_nowait(item)
        assert item.done is not None
        return await item.done

    async def _handle_entry(self, owned: _Owned, entry: _Entry) -> None:
        part = owned.part
        if not entry.fields:
            # trimmed or deleted while pending: nothing to handle, acknowledge it
            for mw in self.middleware:
                mw.on_trimmed(self.group, part, entry.entry_id)
            self._commit_q.put_nowait(_CommitItem(owned, entry.entry_id, []))
            return
        too_big = oversized(entry.fields, self.settings.max_event_bytes)
        if too_big:
            await self._dead_letter(owned, entry, too_big, "oversized")
            return
        try:
            event = decode_entry(entry.fields, part)
        except (MalformedEvent, ValueError) as exc:
            await self._dead_letter(owned, entry, f"malformed: {exc}", "malformed")
            return
        if entry.attempts >= self.settings.max_attempts:
            await self._dead_letter(
                owned, entry, f"delivered {entry.attempts} times without completing "
                "(a worker died on it each time)", "attempts")
            return
        delivery = Delivery(entry.entry_id, owned.key, event, attempts=entry.attempts)
        attempts = entry.attempts
        while True:
            for mw in self.middleware:
                mw.before_handle(self.group, part, delivery)
            t0 = time.perf_counter()
            # the watchdog cancels a handler still running at this deadline (one timer for all
            # streams instead of one per entry)
            owned.deadline = t0 + self.settings.handler_timeout_s
            try:
                try:
                    emits = await self.stage.handle(owned.ctx, delivery)
                finally:
                    owned.deadline = None
            except asyncio.CancelledError:
                if not owned.timed_out:
                    raise
                owned.timed_out = False
                task = asyncio.current_task()
                if task is not None and task.uncancel() > 0:
                    raise  # cancelled for another reason too (shutdown)
                timeout = TimeoutError(f"the handler took more than "
                                       f"{self.settings.handler_timeout_s:g} s")
                attempts = await self._failed(owned, entry, delivery, timeout, attempts)
                if attempts < 0:
                    return
                continue
            except Reject as exc:
                for mw in self.middleware:
                    mw.on_failure(self.group, part, delivery, exc, attempts + 1)
                await self._dead_letter(owned, entry, f"rejected: {exc}", "rejected",
                                        attempts + 1)
                return
            except Exception as exc:
                attempts = await self._failed(owned, entry, delivery, exc, attempts)
                if attempts < 0:
                    return
                continue
            seconds = time.perf_counter() - t0
            for mw in self.middleware:
                mw.after_handle(self.group, part, delivery, emits, seconds)
            item = _CommitItem(owned, entry.entry_id, list(emits or []), finish=delivery.is_end)
            if delivery.is_end:
                item.waited()
            self._commit_q.put_nowait(item)
            if item.done is not None and await item.done:
                owned.finished = True
                # Nothing should follow an end marker; what does is dead-lettered (and so
                # acknowledged), not dropped with its entries pending for ever
                while owned.queue:
                    late = owned.queue.popleft()
                    await self._dead_letter(owned, late, "after the end of its stream", "late")
            return

    async def _failed(self, owned: _Owned, entry: _Entry, delivery: Delivery,
                      exc: BaseException, attempts: int) -> int:
        """A handler call failed: the attempts so far after a back-off before the next one,
        or -1 when the entry was dead-lettered or left pending for the next owner."""
        attempts += 1
        for mw in self.middleware:
            mw.on_failure(self.group, owned.part, delivery, exc, attempts)
        if owned.closing:
            # left pending for the next owner, and so is everything queued after it (handling
            # those now would put them before it)
            owned.inflight -= 1 + len(owned.queue)
            owned.queue.clear()
            return -1
        if attempts >= self.settings.max_attempts:
            await self._dead_letter(owned, entry, f"{type(exc).__name__}: {exc}", "failed",
                                    attempts)
            return -1
        delivery.attempts = attempts
        delivery.retry = True
        await asyncio.sleep(self.settings.retry_backoff_ms / 1000 * attempts)
        return attempts

    async def _watchdog_loop(self) -> None:
        """Cancel handler calls that run past ``handler_timeout_s`` (they fail, and are
        retried or dead-lettered like any other failure)."""
        period = min(1.0, self.settings.handler_timeout_s / 10)
        while not self._loops_closed:
            await asyncio.sleep(period)
            now = time.perf_counter()
            for owned in list(self.owned.values()):
                deadline = owned.deadline
                if (deadline is not None and now > deadline and not owned.timed_out
                        and owned.task is not None and not owned.task.done()):
                    owned.timed_out = True
                    owned.task.cancel()

    async def _dead_letter(self, owned: _Owned, entry: _Entry, error: str, reason: str,
                           attempts: int | None = None) -> None:
        dead = dead_letter_for(
            stage=self.group, worker=self.worker_id, stream=owned.key, entry_id=entry.entry_id,
            fields=entry.fields or [], error=error, reason=reason,
            attempts=entry.attempts if attempts is None else attempts, session=owned.part.session)
        for mw in self.middleware:
            mw.on_dead_letter(self.group, owned.part, entry.entry_id, error, reason)
        self._commit_q.put_nowait(_CommitItem(owned, entry.entry_id, [], dead=dead))

    # -- fetching -----------------------------------------------------------------
    async def _fetch_supervisor(self) -> None:
        """Keep one fetch loop per hash slot group (one in total without a cluster)."""
        while not self._loops_closed:
            slots = {o.slot for o in self.owned.values()}
            for slot in slots:
                task = self._fetchers.get(slot)
                if task is None or task.done():
                    self._fetchers[slot] = asyncio.create_task(self._fetch_loop(slot),
                                                               name=f"fetch {slot}")
            self._fetch_wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._fetch_wake.wait(), timeout=0.2)

    async def _fetch_loop(self, slot: str) -> None:
        """Fenced reads of the streams that may hold new entries. When none may, wait on the
        bells of their rooms (one blocking XREAD over a few keys, not over every stream);
        every ``poll_ms`` look at all of them anyway (an entry added without a bell)."""
        block = self.settings.block_ms
        poll_s = self.settings.poll_ms / 1000
        limit = self.settings.max_inflight
        count = self.settings.batch_count
        backoff = 0.05
        idle_rounds = 0
        bells: dict[str, str] = {}  # bell key -> last bell entry seen
        next_poll = time.monotonic() + poll_s
        while not self._loops_closed:
            readable = [
                o for o in self.owned.values()
                if o.slot == slot and o.ready and not o.closing and not o.finished
            ]
            room = [o for o in readable if o.inflight < limit]
            if not room:
                idle_rounds += 1
                if idle_rounds > 50 and not any(o.slot == slot for o in self.owned.values()):
                    return  # nothing of this slot left; the supervisor restarts us if needed
                # wait for commits to free in-flight room (or a stream to become ready)
                self._capacity.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._capacity.wait(), timeout=block / 1000)
                continue
            idle_rounds = 0
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + poll_s
                for o in room:
                    o.maybe_more = True
            due = [o for o in room if o.maybe_more]
            try:
                if due:
                    keys: list[str] = []
                    starts: list[str] = []
                    for o in due:
                        keys += [o.lease_key, o.key]
                        starts.append(o.last_read if o.reread else ">")
                        o.maybe_more = False  # unless this read fills a whole batch
                    self._fetches_sent += 1
                    try:
                        reply = await self._read_fenced(keys, count, starts)
                    finally:
                        self._fetches_back += 1
                    if self._enqueue(reply, count, {o.key: o for o in due}):
                        continue
                await self._wait_bells(bells, readable, len(room) < len(readable),
                                       min(block / 1000, max(0.0, next_poll - time.monotonic())))
                backoff = 0.05
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # a stream or its group was deleted under us: give those streams up
                for o in readable:
                    self._lose(o)
            except (RedisError, OSError) as exc:
                for o in due:
                    # The read may have run with its reply lost (a connection dropped, Redis
                    # shutting down): its entries would then be pending under this consumer,
                    # never queued. Read this consumer's own pending entries after the last
                    # one queued first (they are handled, not left for a next owner).
                    o.maybe_more = True
                    o.reread = True
                log.warning("fetch failed; retrying", error=str(exc), backoff=backoff)
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)

    async def _wait_bells(self, bells: dict[str, str], readable: list[_Owned], full: bool,
                          wait_s: float) -> None:
        """Wait up to ``wait_s`` for a bell of these streams; mark the streams it names."""
        wanted = {o.bell for o in readable}
        for bell in list(bells):
            if bell not in wanted:
                del bells[bell]
        for bell in wanted:
            # a bell not watched yet: from its start (at most ~BELL_MAXLEN entries): a stream
            # it names once too often is only read once more
            bells.setdefault(bell, "0-0")
        if full:
            # some streams only wait for in-flight room, which commits free without a bell:
            # look at the bells without blocking (Redis times blocks out in steps of 100 ms),
            # then wait for room a little
            reply = await self.r.xread(dict(bells), count=BELL_MAXLEN)
            if not reply:
                self._capacity.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._capacity.wait(), timeout=min(wait_s, 0.005))
        else:
            reply = await self.r.xread(dict(bells), count=BELL_MAXLEN,
                                       block=max(1, int(wait_s * 1000)))
        for raw_bell, entries in reply or []:
            bell = _s(raw_bell)
            bells[bell] = _s(entries[-1][0])
            if len(entries) >= BELL_MAXLEN:
                # the bell keeps about BELL_MAXLEN entries: some after the last one we saw may
                # have been trimmed before we came back. Look at all of its streams.
                for o in readable:
                    if o.bell == bell:
                        o.maybe_more = True
            for _entry_id, fields in entries:
                for raw_key in (fields.get(b"keys") or b"").split():
                    owned = self._by_key.get(raw_key.decode(errors="replace"))
                    if owned is not None:
                        owned.maybe_more = True

    async def _read_fenced(self, keys: list[str], count: int, starts: list[str]) -> list[Any]:
        """One fenced read (bus/lua/fetch.lua) of (lease, stream) pairs ``keys``, each stream
        after its id in ``starts`` (">": new entries)."""
        return list(await self.scripts.fetch(keys=keys, args=[self.group, self.worker_id,
                                                              count, *starts]) or [])

    def _enqueue(self, reply: list[Any], count: int, readers: dict[str, _Owned]) -> bool:
        """Queue what a fenced read returned, each stream's entries to the ownership that read
        them (``readers``): one lost meanwhile gets nothing (its entries stay pending)."""
        got = False
        for raw_key, entries in reply:
            owned = readers.get(_s(raw_key))
            if owned is None or owned.closing == "lost":
                continue
            if entries == b"LOST" or entries == "LOST":
                self._lose(owned)
                continue
            if not entries:
                continue
            if owned.closing or owned.task is None or owned.task.done():
                # Being given up (shed, stopping): its task may already have stopped taking
                # entries and only wait for its commits, and these would be queued behind it
                # for ever, with the lease held. They stay pending, after everything handled:
                # the next owner claims them (and this worker, should it take the stream
                # again, reads its own pending ones first).
                continue
            owned.queue.extend(_Entry(_s(entry_id), flat or None) for entry_id, flat in entries)
            owned.inflight += len(entries)
            owned.last_read = owned.queue[-1].entry_id
            if len(entries) >= count:
                owned.maybe_more = True  # (and a re-read goes on from its last entry)
            elif owned.reread:
                owned.reread = False
                owned.maybe_more = True  # now the new ones
            got = True
            owned.wake.set()
        for owned in readers.values():
            if owned.reread and not owned.maybe_more:  # nothing came back: none was lost
                owned.reread = False
                owned.maybe_more = True
        return got

    # -- committing ------------------------------------------------------------------
    async def _committer(self) -> None:
        while not self._loops_closed:
            first = await self._commit_q.get()
            batch = [first]
            while not self._commit_q.empty() and len(batch) < 2000:
                batch.append(self._commit_q.get_nowait())
            delay = 0.05
            while True:
                try:
                    await self._commit(batch)
                    break
                except ResponseError as exc:
                    # not a connection problem: retrying the same batch would fail again.
                    # Give the streams up; their entries stay pending, are claimed again and,
                    # if they keep failing, dead-lettered by their delivery count.
                    log.error("commit rejected by Redis; giving the streams up",
                              error=str(exc), items=len(batch))
                    for item in batch:
                        item.owned.inflight -= 1
                        self._lose(item.owned)
                        if item.done is not None and not item.done.done():
                            item.done.set_result(False)
                    break
                except (RedisError, OSError) as exc:
                    log.warning("commit failed; retrying", error=str(exc), items=len(batch))
                    await asyncio.sleep(delay)
                    delay = min(2.0, delay * 2)

    async def _commit(self, batch: list[_CommitItem]) -> None:
        live = []
        for item in batch:
            if item.owned.closing == "lost":  # see _lose: not a line of it is written
                item.owned.inflight -= 1
                if item.done is not None and not item.done.done():
                    item.done.set_result(False)
            else:
                live.append(item)
        batch[:] = live  # (a retried batch does not count them twice)
        if not batch:
            self._capacity.set()
            return
        by_room: dict[str, list[_CommitItem]] = {}
        for item in batch:
            by_room.setdefault(item.owned.part.room, []).append(item)
        # One script call per room on a cluster (a room's keys share its slot; the rooms'
        # calls run concurrently, so a room's items must not be split over two). On a plain
        # Redis the whole batch, grouped by room (each stream's items keep their order), in
        # calls of at most _ITEMS_PER_CALL items (a script holds Redis for every client while
        # it runs), one after the other in one pipeline.
        if self.settings.redis_cluster:
            groups = list(by_room.values())
        else:
            flat = [item for items in by_room.values() for item in items]
            groups = [flat[i:i + _ITEMS_PER_CALL] for i in range(0, len(flat), _ITEMS_PER_CALL)]
        t0 = time.perf_counter()
        calls = [self._commit_call(items) for items in groups]
        self._commits_sent += 1
        try:
            results = await self._send_commit(calls)
        finally:
            self._commits_back += 1
        seconds = time.perf_counter() - t0
        for items, result in zip(groups, results, strict=True):
            written, dups, acked = int(result[0]), int(result[1]), int(result[2])
            fenced = {_s(tag) for tag in result[3:]}
            for mw in self.middleware:
                mw.after_commit(self.group, written, dups, acked, seconds)
            for item in items:
                item.owned.inflight -= 1
                ok = item.owned.lease_key not in fenced
                if not ok:
                    self._lose(item.owned)
                if item.done is not None and not item.done.done():
                    item.done.set_result(ok)
        self._capacity.set()

    async def _send_commit(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        return await self._run_scripts(self.scripts.commit, calls)

    async def _run_scripts(self, script: Any, calls: list[tuple[list[str], list[Any]]],
                           first: Any = None) -> list[Any]:
        """Run ``script`` once per (keys, args) of ``calls``, in one round trip, after
        ``first(client)``'s command when given; the replies in that order. On a cluster each
        call (its keys all in one room) goes to its room's shard, all concurrently; on a plain
        Redis they run one after the other."""
        if self.settings.redis_cluster:
            aws = [script(keys=keys, args=args) for keys, args in calls]
            if first is not None:
                aws.insert(0, first(self.r))
            return list(await asyncio.gather(*aws))
        return await self._pipelined(script, calls, first)

    async def _pipelined(self, script: Any, calls: list[tuple[list[str], list[Any]]],
                         first: Any = None) -> list[Any]:
        """One pipeline: ``first(pipe)``'s command, then ``script`` once per (keys, args), by
        EVALSHA: redis-py's pipelined scripts would ask SCRIPT EXISTS first on every execute,
        a second round trip. A Redis that lost its scripts (restarted, SCRIPT FLUSH) answers
        NOSCRIPT: they are loaded and the pipeline sent again, which is safe because none of
        them ran (and the scripts are idempotent besides)."""
        for attempt in (0, 1):
            pipe = self.r.pipeline(transaction=False)
            if first is not None:
                first(pipe)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt:
                    raise
                await self.scripts.load()
        raise AssertionError("unreachable")

    def _commit_call(self, items: list[_CommitItem]) -> tuple[list[str], list[Any]]:
        """The keys and arguments of one commit.lua call for ``items`` (grouped by room)."""
        keys: list[str] = []
        index: dict[str, int] = {}

        def k(name: str) -> int:
            if name not in index:
                keys.append(name)
                index[name] = len(keys)
            return index[name]

        room = items[0].owned.part.room
        progress = k(self.keys.progress(room))
        trim_mode, trim_value = "none", "0"
        if self.settings.retention_s > 0:
            trim_mode = "minid"
            trim_value = str(int((clock.now() - self.settings.retention_s) * 1000))
        elif self.settings.maxlen > 0:
            trim_mode, trim_value = "maxlen", str(self.settings.maxlen)
        ops: list[list[Any]] = []
        belled: set[int] = set()  # outputs whose bell has its "B" op
        now = clock.now()
        current: _Owned | None = None
        for item in items:
            owned = item.owned
            if owned is not current:
                if owned.part.room != room:
                    room = owned.part.room
                    ops.append(["P", k(self.keys.progress(room))])
                ops.append(["L", k(owned.lease_key), owned.lease_key])
                current = owned
            if item.entry_id is not None:
                ops.append(["A", k(owned.key), item.entry_id, owned.wm_field])
            for emit in item.emits:
                event = emit.event
                event.emitted = now
                out = k(emit.key)
                if out not in belled:
                    belled.add(out)
                    bell = owned.bells.get(emit.key, "")
                    if bell == "":
                        bell = owned.bells[emit.key] = self.keys.bell_of(emit.key)
                    if bell is not None:
                        ops.append(["B", out, k(bell)])
                dedup = ""
                if emit.dedup:
                    dedup = owned.dedup_fields.get(emit.key, "")
                    if not dedup or event.session != owned.part.session:
                        dedup = self.keys.output_field(self.group, emit.key, event.session)
                        if event.session == owned.part.session:
                            owned.dedup_fields[emit.key] = dedup
                seq, part = event.order
                ops.append(["E", out, dedup, seq, part, event.to_flat()])
            if item.dead is not None:
                ops.append(["E", k(self.keys.deadletter(room)), "", 0, 0, item.dead.to_flat()])
            if item.finish:
                ops.append(["F", self._fin_field(owned.part)])
        args = [self.group, self.worker_id, trim_mode, trim_value, progress,
                msgpack.packb(ops, use_bin_type=False)]  # Lua cmsgpack reads no bin type
        return keys, args

    def _wm_field(self, part: Partition) -> str:
        return self.keys.watermark_field(self.group, self.stage.input_family, part)

    def _fin_field(self, part: Partition) -> str:
        return self.keys.finished_field(self.group, self.stage.input_family, part)

    @property
    def _never_after_s(self) -> float:
        """How long after a session ended its input stream may still appear (the retention
        window: by then it would be trimmed; an hour when streams are capped by length)."""
        return self.settings.retention_s if self.settings.retention_s > 0 else 3600.0

    # -- retention ----------------------------------------------------------------------
    async def _retention_loop(self) -> None:
        """Sweep the inputs of sessions that ended a retention window ago (bus/retention.py)."""
        keep = self.settings.retention_s
        if keep <= 0:
            return
        while not self._loops_closed:
            await asyncio.sleep(min(60.0, max(0.2, keep / 4)))
            try:
                for room in await self.registry.rooms():
                    swept, forgotten = await self._sweeper.sweep(
                        room, await self.registry.sessions(room), self._targets.get(room, []),
                        busy=set(self.owned))
                    self._finished_cache |= swept
                    if forgotten:
                        self._finished_cache = {p for p in self._finished_cache
                                                if p.room != room or p.session not in forgotten}
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
                    if _s(g.get("name", b"")) == self.group:
                        lag += int(g.get("lag") or 0)
                        pending += int(g.get("pending") or 0)
            LAG.labels(self.group).set(lag)
            PENDING.labels(self.group).set(pending)


# -- one entry, without I/O (shared with bus.harness) ------------------------------------


def oversized(fields: list[Any], max_bytes: int) -> str | None:
    """The error for an entry whose fields are larger than ``max_bytes``, else None."""
    size = sum(map(len, fields))
    if size > max_bytes:
        return f"oversized: {size} bytes, more than S2ST_MAX_EVENT_BYTES ({max_bytes})"
    return None


def decode_entry(fields: list[Any], part: Partition) -> Event:
    """The event of an input entry of stream ``part``; MalformedEvent (a ValueError) if it
    does not decode or belongs to another session."""
    event = decode_event(fields)
    if event.room != part.room or event.session != part.session:
        raise MalformedEvent(
            f"entry belongs to {event.room}/{event.session}, not to stream {part}")
    return event


def dead_letter_for(*, stage: str, worker: str, stream: str, entry_id: str, fields: list[Any],
                    error: str, reason: str, attempts: int, session: str) -> DeadLetter:
    """The dead letter of an input entry given up for ``reason`` (its original fields kept,
    cut to 1 kB each when it was oversized)."""
    raw = {(_s(k)): (v if isinstance(v, bytes) else str(v).encode())
           for k, v in zip(fields[::2], fields[1::2], strict=False)}
    if reason == "oversized":  # keep what says what it was, not the bulk
        raw = {k: v[:_KEPT_OF_OVERSIZED] for k, v in raw.items()}
    return DeadLetter(stage=stage, worker=worker, stream=stream, entry_id=entry_id,
                      error=error[:2000], attempts=attempts, failed_at=clock.now(),
                      session=session, original=raw)


def _freeze_startup_objects() -> None:
    """Move every object alive now (modules, a stage's model) to the collector's permanent
    generation. Python's full collections walk every tracked object: 12 ms for a relay
    worker's 60,000, 35 ms with faster-whisper and torch loaded, each a stall of every stream
    the worker owns (a hop's p99 is a few milliseconds). Objects made later are collected as
    before; what startup left as garbage is collected first."""
    gc.collect()
    gc.freeze()


def _before(entry_id: str) -> str:
    """The id just before ``entry_id`` (XREADGROUP returns entries after the given id)."""
    ms, seq = entry_id.split("-")
    if int(seq) > 0:
        return f"{ms}-{int(seq) - 1}"
    return f"{int(ms) - 1}-18446744073709551615" if int(ms) > 0 else "0-0"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
