"""One task per owned stream: recovery, then its entries in order through the stage.

The task creates the consumer group if needed, lets the stage rebuild its state
(``on_acquire``), claims what the previous owner left pending and hands those entries first,
then whatever the fetch loop queues (bus/runtime/handler.py applies the per-entry rules);
with no input it calls ``on_tick`` every ``tick_interval_s``. What the stage produced goes to
the committer's queue. Once the stream is given up (shed, lost, finished, stopping) the task
waits for its commits and releases the stream. A watchdog cancels handler calls that run past
``handler_timeout_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from bus import clock
from bus.connection import AnyRedis
from bus.logs import get_logger
from bus.middleware import Middleware
from bus.runtime.handler import RetryPolicy, dead_letter_for, handle_entry
from bus.runtime.ownership import CommitItem, Entry, Holdings, Owned, OwnershipState
from bus.runtime.reading import claim_pending, ensure_group
from bus.scripts import Scripts
from bus.settings import BusSettings
from bus.stage import Delivery, Emit, Stage

log = get_logger("s2st.runtime")

TURN_S = 0.002  # a stream's task hands the loop on after handling entries this long

Release = Callable[[Owned, str], Awaitable[None]]


class StreamTasks:
    """Runs the task of each owned stream of one worker."""

    def __init__(self, stage: Stage, holdings: Holdings, *, r: AnyRedis, scripts: Scripts,
                 settings: BusSettings, middleware: list[Middleware],
                 commits: asyncio.Queue[CommitItem], fetch_wake: asyncio.Event,
                 capacity: asyncio.Event, release: Release) -> None:
        self.stage = stage
        self.group = stage.name
        self.holdings = holdings
        self.r = r
        self.scripts = scripts
        self.settings = settings
        self.worker_id = settings.worker_id
        self.policy = RetryPolicy.of(settings)
        self.middleware = middleware
        self.commits = commits
        self.fetch_wake = fetch_wake
        self.capacity = capacity
        self.release = release

    def start(self, owned: Owned) -> None:
        owned.ctx._publish = lambda emits: self.publish_now(owned, emits)
        owned.task = asyncio.create_task(self.run(owned), name=f"stream {owned.part}")

    async def run(self, owned: Owned) -> None:
        try:
            await ensure_group(self.r, owned, self.group)
            await self.stage.on_acquire(owned.ctx)
            await claim_pending(self.r, self.scripts, owned, group=self.group,
                                worker_id=self.worker_id, middleware=self.middleware)
            owned.ready = True
            self.fetch_wake.set()
            self.capacity.set()
            tick = self.stage.tick_interval_s
            turn_ends = time.perf_counter() + TURN_S
            while True:
                if owned.closing == OwnershipState.LOST:
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
                            await self.tick(owned)
                    turn_ends = time.perf_counter() + TURN_S
                    continue
                entry = owned.queue.popleft()
                owned.ctx.more_pending = bool(owned.queue)
                await self.handle(owned, entry)
                if self.commits.qsize() == 1 or time.perf_counter() > turn_ends:
                    # Let the others run: the committer, if it is idle, starts writing this
                    # one now (group commit: what we handle meanwhile goes into its next round
                    # trip); and a stream with a long queue (and a handler that never waits)
                    # must not hold the loop, or the other streams, the committer and the
                    # heartbeat (the leases!) wait behind it.
                    await asyncio.sleep(0)
                    turn_ends = time.perf_counter() + TURN_S
            # wait until what we produced is written before giving the lease back
            while owned.inflight > len(owned.queue) and owned.closing != OwnershipState.LOST:
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
            owned.closing = OwnershipState.LOST
        except Exception:
            log.exception("stream task crashed; giving the stream up", part=str(owned.part))
            owned.closing = OwnershipState.ERROR
        await self.release(owned, OwnershipState.FINISHED if owned.finished
                           else (owned.closing or OwnershipState.DONE))

    async def tick(self, owned: Owned) -> None:
        if owned.closing:
            return
        try:
            emits = await self.stage.on_tick(owned.ctx, clock.now())
        except Exception as exc:
            log.warning("tick failed", part=str(owned.part), error=f"{type(exc).__name__}: {exc}")
            return
        if emits:
            owned.inflight += 1
            self.commits.put_nowait(CommitItem(owned, None, emits))

    async def publish_now(self, owned: Owned, emits: list[Emit]) -> bool:
        if owned.closing == OwnershipState.LOST:
            return False
        owned.inflight += 1
        item = CommitItem(owned, None, list(emits)).waited()
        self.commits.put_nowait(item)
        assert item.done is not None
        return await item.done

    async def handle(self, owned: Owned, entry: Entry) -> None:
        if not entry.fields:
            # trimmed or deleted while pending: nothing to handle, acknowledge it
            for mw in self.middleware:
                mw.on_trimmed(self.group, owned.part, entry.entry_id)
            self.commits.put_nowait(CommitItem(owned, entry.entry_id, []))
            return
        await handle_entry(_Delivering(self, owned, entry), self.policy,
                           entry_id=entry.entry_id, stream=owned.key, fields=entry.fields,
                           part=owned.part, attempts=entry.attempts,
                           max_event_bytes=self.settings.max_event_bytes)

    async def dead_letter(self, owned: Owned, entry: Entry, error: str, reason: str,
                          attempts: int) -> None:
        dead = dead_letter_for(
            stage=self.group, worker=self.worker_id, stream=owned.key, entry_id=entry.entry_id,
            fields=entry.fields or [], error=error, reason=reason, attempts=attempts,
            session=owned.part.session)
        for mw in self.middleware:
            mw.on_dead_letter(self.group, owned.part, entry.entry_id, error, reason)
        self.commits.put_nowait(CommitItem(owned, entry.entry_id, [], dead=dead))

    async def watchdog(self, closed: Callable[[], bool]) -> None:
        """Cancel handler calls that run past ``handler_timeout_s`` (they fail, and are
        retried or dead-lettered like any other failure)."""
        period = min(1.0, self.policy.timeout_s / 10)
        while not closed():
            await asyncio.sleep(period)
            now = time.perf_counter()
            for owned in list(self.holdings.owned.values()):
                deadline = owned.deadline
                if (deadline is not None and now > deadline and not owned.timed_out
                        and owned.task is not None and not owned.task.done()):
                    owned.timed_out = True
                    owned.task.cancel()


class _Delivering:
    """One entry of an owned stream on its way through the stage (a handler Target)."""

    __slots__ = ("entry", "owned", "tasks")

    def __init__(self, tasks: StreamTasks, owned: Owned, entry: Entry) -> None:
        self.tasks, self.owned, self.entry = tasks, owned, entry

    def before(self, delivery: Delivery) -> None:
        for mw in self.tasks.middleware:
            mw.before_handle(self.tasks.group, self.owned.part, delivery)

    async def call(self, delivery: Delivery) -> list[Emit]:
        owned, policy = self.owned, self.tasks.policy
        # the watchdog cancels a handler still running at this deadline (one timer for all
        # streams instead of one per entry)
        owned.deadline = time.perf_counter() + policy.timeout_s
        try:
            try:
                return await self.tasks.stage.handle(owned.ctx, delivery)
            finally:
                owned.deadline = None
        except asyncio.CancelledError:
            if not owned.timed_out:
                raise
            owned.timed_out = False
            task = asyncio.current_task()
            if task is not None and task.uncancel() > 0:
                raise  # cancelled for another reason too (shutdown)
            raise policy.timeout_error() from None

    async def handled(self, delivery: Delivery, emits: list[Emit], seconds: float) -> None:
        tasks, owned = self.tasks, self.owned
        for mw in tasks.middleware:
            mw.after_handle(tasks.group, owned.part, delivery, emits, seconds)
        item = CommitItem(owned, self.entry.entry_id, emits, finish=delivery.is_end)
        if delivery.is_end:
            item.waited()
        tasks.commits.put_nowait(item)
        if item.done is not None and await item.done:
            owned.finished = True
            # Nothing should follow an end marker; what does is dead-lettered (and so
            # acknowledged), not dropped with its entries pending for ever
            while owned.queue:
                late = owned.queue.popleft()
                await tasks.dead_letter(owned, late, "after the end of its stream", "late",
                                        late.attempts)

    async def dead_letter(self, error: str, reason: str, attempts: int) -> None:
        await self.tasks.dead_letter(self.owned, self.entry, error, reason, attempts)

    def on_failure(self, delivery: Delivery, exc: BaseException, attempts: int) -> None:
        for mw in self.tasks.middleware:
            mw.on_failure(self.tasks.group, self.owned.part, delivery, exc, attempts)

    def keep_going(self) -> bool:
        owned = self.owned
        if owned.closing:
            # left pending for the next owner, and so is everything queued after it (handling
            # those now would put them before it)
            owned.inflight -= 1 + len(owned.queue)
            owned.queue.clear()
            return False
        return True

    async def back_off(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
