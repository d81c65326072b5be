"""The committer: gathers what the streams produced and writes it, fenced and atomic.

One loop takes every commit item queued (up to 2,000), builds the script calls
(bus/runtime/commit_ops.py) and sends them in one round trip: lease check (fencing), outputs
(deduplicated by session, stage, seq, part), input watermark and XACK, all atomic per call.
A connection failure retries the batch; a refusal gives its streams up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import NoScriptError, RedisError, ResponseError

from bus import clock
from bus.connection import AnyRedis
from bus.logs import get_logger
from bus.middleware import Middleware
from bus.runtime.commit_ops import Call, CommitTarget, commit_call, group_items
from bus.runtime.ownership import CommitItem, Holdings, OwnershipState
from bus.scripts import Scripts
from bus.text import as_text

log = get_logger("s2st.runtime")

Send = Callable[[list[Call]], Awaitable[list[Any]]]


class Committer:
    """Writes the commit items queued on :attr:`queue`; ``send`` sends one round's calls."""

    def __init__(self, holdings: Holdings, target: CommitTarget, *, cluster: bool,
                 middleware: list[Middleware], capacity: asyncio.Event, send: Send,
                 closed: Callable[[], bool]) -> None:
        self.holdings = holdings
        self.target = target
        self.cluster = cluster
        self.middleware = middleware
        self.capacity = capacity  # set when commits freed in-flight room
        self.send = send
        self.closed = closed
        self.queue: asyncio.Queue[CommitItem] = asyncio.Queue()

    def drained(self) -> bool:
        return self.queue.empty() and not self.holdings.in_flight()

    async def run(self) -> None:
        while not self.closed():
            first = await self.queue.get()
            batch = [first]
            while not self.queue.empty() and len(batch) < 2000:
                batch.append(self.queue.get_nowait())
            delay = 0.05
            while True:
                try:
                    await self.commit(batch)
                    break
                except ResponseError as exc:
                    # not a connection problem: retrying the same batch would fail again.
                    # Give the streams up; their entries stay pending, are claimed again and,
                    # if they keep failing, dead-lettered by their delivery count.
                    log.error("commit rejected by Redis; giving the streams up",
                              error=str(exc), items=len(batch))
                    for item in batch:
                        item.owned.inflight -= 1
                        self.holdings.lose(item.owned)
                        _settle(item, False)
                    break
                except (RedisError, OSError) as exc:
                    log.warning("commit failed; retrying", error=str(exc), items=len(batch))
                    await asyncio.sleep(delay)
                    delay = min(2.0, delay * 2)

    async def commit(self, batch: list[CommitItem]) -> None:
        live = []
        for item in batch:
            if item.owned.closing == OwnershipState.LOST:  # not a line of it is written
                item.owned.inflight -= 1
                _settle(item, False)
            else:
                live.append(item)
        batch[:] = live  # (a retried batch does not count them twice)
        if not batch:
            self.capacity.set()
            return
        groups = group_items(batch, self.cluster)
        t0 = time.perf_counter()
        now = clock.now()
        calls = [commit_call(self.target, items, now) for items in groups]
        self.holdings.commits_sent += 1
        try:
            results = await self.send(calls)
        finally:
            self.holdings.commits_back += 1
        seconds = time.perf_counter() - t0
        for items, result in zip(groups, results, strict=True):
            written, dups, acked = int(result[0]), int(result[1]), int(result[2])
            fenced = {as_text(tag) for tag in result[3:]}
            for mw in self.middleware:
                mw.after_commit(self.target.stage, written, dups, acked, seconds)
            for item in items:
                item.owned.inflight -= 1
                ok = item.owned.lease_key not in fenced
                if not ok:
                    self.holdings.lose(item.owned)
                _settle(item, ok)
        self.capacity.set()


def _settle(item: CommitItem, ok: bool) -> None:
    if item.done is not None and not item.done.done():
        item.done.set_result(ok)


async def run_scripts(r: AnyRedis, scripts: Scripts, cluster: bool, script: Any,
                      calls: list[Call], first: Any = None) -> list[Any]:
    """Run ``script`` once per (keys, args) of ``calls``, in one round trip, after
    ``first(client)``'s command when given; the replies in that order. On a cluster each
    call (its keys all in one room) goes to its room's shard, all concurrently; on a plain
    Redis they run one after the other."""
    if cluster:
        aws = [script(keys=keys, args=args) for keys, args in calls]
        if first is not None:
            aws.insert(0, first(r))
        return list(await asyncio.gather(*aws))
    return await _pipelined(r, scripts, script, calls, first)


async def _pipelined(r: AnyRedis, scripts: Scripts, script: Any, calls: list[Call],
                     first: Any = None) -> list[Any]:
    """One pipeline: ``first(pipe)``'s command, then ``script`` once per (keys, args), by
    EVALSHA: redis-py's pipelined scripts would ask SCRIPT EXISTS first on every execute,
    a second round trip. A Redis that lost its scripts (restarted, SCRIPT FLUSH) answers
    NOSCRIPT: they are loaded and the pipeline sent again, which is safe because none of
    them ran (and the scripts are idempotent besides)."""
    for attempt in (0, 1):
        pipe = r.pipeline(transaction=False)
        if first is not None:
            first(pipe)
        for keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        try:
            return list(await pipe.execute())
        except NoScriptError:
            if attempt:
                raise
            await scripts.load()
    raise AssertionError("unreachable")
