"""Reading the owned streams: recovery of pending entries, fetch loops, bells, fenced reads.

One fetch loop per hash slot group (one in total without a cluster) reads every owned stream
that may hold new entries with one fenced read (bus/lua/fetch.lua: lease check and
XREADGROUP), and queues what came back to the stream's record. When no stream may hold more,
it blocks on the bells of their families instead of on every stream; every ``poll_ms`` it
looks at all of them anyway (an entry added without a bell).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError, ResponseError

from bus.connection import AnyRedis
from bus.keys import BELL_MAXLEN
from bus.logs import get_logger
from bus.middleware import Middleware
from bus.runtime.ownership import Entry, Holdings, Owned, OwnershipState
from bus.scripts import Scripts
from bus.settings import BusSettings
from bus.text import as_text

log = get_logger("s2st.runtime")

ReadFenced = Callable[[list[str], int, list[str]], Awaitable[list[Any]]]


class Reader:
    """Keeps the fetch loops of a worker's owned streams running."""

    def __init__(self, r: AnyRedis, holdings: Holdings, settings: BusSettings, *,
                 read_fenced: ReadFenced, capacity: asyncio.Event, wake: asyncio.Event,
                 closed: Callable[[], bool]) -> None:
        self.r = r
        self.holdings = holdings
        self.settings = settings
        self.read_fenced = read_fenced
        self.capacity = capacity  # commits freed in-flight room (or a stream became ready)
        self.wake = wake  # a stream became ready: a fetch loop may be needed
        self.closed = closed
        self.fetchers: dict[str, asyncio.Task[None]] = {}

    async def supervise(self) -> None:
        """Keep one fetch loop per hash slot group (one in total without a cluster)."""
        while not self.closed():
            slots = {o.slot for o in self.holdings.owned.values()}
            for slot in slots:
                task = self.fetchers.get(slot)
                if task is None or task.done():
                    self.fetchers[slot] = asyncio.create_task(self.fetch_loop(slot),
                                                              name=f"fetch {slot}")
            self.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=0.2)

    async def fetch_loop(self, slot: str) -> None:
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
        owned = self.holdings.owned
        while not self.closed():
            readable = [
                o for o in owned.values()
                if o.slot == slot and o.ready and not o.closing and not o.finished
            ]
            room = [o for o in readable if o.inflight < limit]
            if not room:
                idle_rounds += 1
                if idle_rounds > 50 and not any(o.slot == slot for o in owned.values()):
                    return  # nothing of this slot left; the supervisor restarts us if needed
                # wait for commits to free in-flight room (or a stream to become ready)
                self.capacity.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.capacity.wait(), timeout=block / 1000)
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
                    self.holdings.fetches_sent += 1
                    try:
                        reply = await self.read_fenced(keys, count, starts)
                    finally:
                        self.holdings.fetches_back += 1
                    if self.enqueue(reply, count, {o.key: o for o in due}):
                        continue
                await self.wait_bells(bells, readable, len(room) < len(readable),
                                      min(block / 1000, max(0.0, next_poll - time.monotonic())))
                backoff = 0.05
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # a stream or its group was deleted under us: give those streams up
                for o in readable:
                    self.holdings.lose(o)
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

    async def wait_bells(self, bells: dict[str, str], readable: list[Owned], full: bool,
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
                self.capacity.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.capacity.wait(), timeout=min(wait_s, 0.005))
        else:
            reply = await self.r.xread(dict(bells), count=BELL_MAXLEN,
                                       block=max(1, int(wait_s * 1000)))
        for raw_bell, entries in reply or []:
            bell = as_text(raw_bell)
            bells[bell] = as_text(entries[-1][0])
            if len(entries) >= BELL_MAXLEN:
                # the bell keeps about BELL_MAXLEN entries: some after the last one we saw may
                # have been trimmed before we came back. Look at all of its streams.
                for o in readable:
                    if o.bell == bell:
                        o.maybe_more = True
            for _entry_id, fields in entries:
                for raw_key in (fields.get(b"keys") or b"").split():
                    owned = self.holdings.by_key.get(raw_key.decode(errors="replace"))
                    if owned is not None:
                        owned.maybe_more = True

    def enqueue(self, reply: list[Any], count: int, readers: dict[str, Owned]) -> bool:
        """Queue what a fenced read returned, each stream's entries to the ownership that read
        them (``readers``): one lost meanwhile gets nothing (its entries stay pending)."""
        got = False
        for raw_key, entries in reply:
            owned = readers.get(as_text(raw_key))
            if owned is None or owned.closing == OwnershipState.LOST:
                continue
            if entries == b"LOST" or entries == "LOST":
                self.holdings.lose(owned)
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
            owned.queue.extend(Entry(as_text(entry_id), flat or None) for entry_id, flat in entries)
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


async def read_fenced(scripts: Scripts, group: str, worker_id: str, keys: list[str],
                      count: int, starts: list[str]) -> list[Any]:
    """One fenced read (bus/lua/fetch.lua) of (lease, stream) pairs ``keys``, each stream
    after its id in ``starts`` (">": new entries)."""
    return list(await scripts.fetch(keys=keys, args=[group, worker_id, count, *starts]) or [])


async def ensure_group(r: AnyRedis, owned: Owned, group: str) -> None:
    """Create the stage's consumer group on ``owned``'s stream (and the stream) if needed."""
    try:
        await r.xgroup_create(owned.key, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def claim_pending(r: AnyRedis, scripts: Scripts, owned: Owned, *, group: str,
                        worker_id: str, middleware: list[Middleware]) -> None:
    """Claim the entries the previous owner left pending (XAUTOCLAIM) and queue them, with
    their delivery counts, before anything new is read."""
    _claimed, deleted = await scripts.claim(keys=[owned.key], args=[group, worker_id])
    for _ in range(int(deleted)):  # Redis 7 drops trimmed pending entries while claiming
        for mw in middleware:
            mw.on_trimmed(group, owned.part, "?")
    start = "-"
    while True:
        pending = await r.xpending_range(owned.key, group, min=start, max="+", count=1000,
                                         consumername=worker_id)
        if not pending:
            break
        counts = {as_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        first = as_text(pending[0]["message_id"])
        reply = await r.xreadgroup(group, worker_id, {owned.key: _before(first)},
                                   count=len(pending))
        entries = reply[0][1] if reply else []
        for entry_id, fields in entries:
            eid = as_text(entry_id)
            if eid not in counts:
                continue
            flat = [x for pair in fields.items() for x in pair] if fields else None
            owned.queue.append(Entry(eid, flat, attempts=counts[eid]))
            owned.inflight += 1
            owned.last_read = eid
        last = as_text(pending[-1]["message_id"])
        start = "(" + last
        if len(pending) < 1000:
            break


def _before(entry_id: str) -> str:
    """The id just before ``entry_id`` (XREADGROUP returns entries after the given id)."""
    ms, seq = entry_id.split("-")
    if int(seq) > 0:
        return f"{ms}-{int(seq) - 1}"
    return f"{int(ms) - 1}-18446744073709551615" if int(ms) > 0 else "0-0"
