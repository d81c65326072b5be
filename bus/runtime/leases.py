"""The leases of a worker's streams: acquire, renew, release, and the stage's live workers.

Each input stream is owned by one worker at a time through an expiring lease
(``SET NX PX``) holding the worker's id. The heartbeat renews every lease held (one script
call per room on a cluster, one for all on a plain Redis) and refreshes the worker's entry in
the stage's worker set; a lease it cannot renew is lost at once (another worker may have it).
"""

from __future__ import annotations

import contextlib
from typing import Any

from redis.exceptions import RedisError

from bus import clock
from bus.connection import AnyRedis
from bus.keys import Keys, Partition
from bus.registry import SessionInfo
from bus.runtime.committer import run_scripts
from bus.runtime.ownership import Holdings, Owned, OwnershipState
from bus.scripts import Scripts
from bus.settings import BusSettings
from bus.stage import PartitionContext
from bus.topology import Topology

WORKER_TTL_FACTOR = 3  # a worker stays in the worker set this many lease TTLs after a heartbeat


class Leases:
    """Acquires, renews and releases the leases of one worker of stage ``group`` reading
    ``family``."""

    def __init__(self, r: AnyRedis, scripts: Scripts, holdings: Holdings,
                 settings: BusSettings, *, group: str, family: str,
                 topology: Topology | None = None) -> None:
        self.r = r
        self.scripts = scripts
        self.holdings = holdings
        self.settings = settings
        self.keys: Keys = settings.keys
        self.group = group
        self.family = family
        self.worker_id = settings.worker_id
        self.topology = topology  # given to each stream's context (its writes are checked)

    @property
    def never_after_s(self) -> float:
        """How long after a session ended its input stream may still appear (the retention
        window: by then it would be trimmed; an hour when streams are capped by length)."""
        return self.settings.retention_s if self.settings.retention_s > 0 else 3600.0

    def fin_field(self, part: Partition) -> str:
        return self.keys.finished_field(self.group, self.family, part)

    async def acquire(self, part: Partition, info: SessionInfo,
                      targets: list[str]) -> Owned | None:
        """Take the lease of ``part``'s stream: its ownership record (not yet held), or None
        when it is not to be taken now (held elsewhere, finished, not written yet, or lost
        lately with a commit or read still on its way)."""
        finished = self.holdings.finished
        lease_key = self.keys.lease(self.group, self.family, part)
        if part in finished:
            return None
        key = self.keys.stream(self.family, part)
        missing = not info.active and not await self.r.exists(key)
        if missing and clock.now() - (info.ended or info.last_seen or info.started) \
                <= self.never_after_s:
            # The session ended and nothing was written here yet. An upstream stage may still
            # be working on it (a short session captured or replayed faster than real time
            # ends before its first transcript exists): look again at the next discovery.
            return None
        if not self.holdings.may_take_again(part):
            return None  # a commit or read of the lost ownership may be on its way
        got = await self.r.set(lease_key, self.worker_id, nx=True, px=self.settings.lease_ttl_ms)
        if not got:
            return None
        # it may have finished since this discovery round looked (here or elsewhere)
        if part in finished or await self.r.hexists(self.keys.progress(part.room),
                                                    self.fin_field(part)):
            finished.add(part)
            await self.scripts.release(keys=[lease_key], args=[self.worker_id])
            return None
        if missing and not await self.r.exists(key):
            # ended so long ago that the stream would have been trimmed: nothing to do, ever
            await self.r.hset(self.keys.progress(part.room), self.fin_field(part), "1")
            await self.scripts.release(keys=[lease_key], args=[self.worker_id])
            finished.add(part)
            return None
        ctx = PartitionContext(
            stage=self.group, worker_id=self.worker_id, family=self.family, partition=part,
            keys=self.keys, client=self.r, session=info, targets=targets,
            topology=self.topology,
        )
        owned = Owned(part, key, lease_key, ctx, self.keys.bell_of(key) or key)
        owned.wm_field = self.keys.watermark_field(self.group, self.family, part)
        owned.slot = part.room if self.settings.redis_cluster else "*"
        return owned

    async def release(self, owned: Owned, reason: str) -> None:
        """Give the lease back (a lost one is not ours to give)."""
        if reason != OwnershipState.LOST:
            with contextlib.suppress(RedisError, OSError):
                await self.scripts.release(keys=[owned.lease_key], args=[self.worker_id])

    async def renew(self) -> None:
        """One heartbeat: renew every lease held and refresh this worker in the worker set;
        lose the streams whose lease is gone."""
        ttl = self.settings.lease_ttl_ms
        owned = self.holdings.owned
        # one round trip for all rooms: under load each round trip waits for the loop
        # behind every busy stream, and a renewal must not take a lease TTL
        # one script call per room on a cluster, one for all on a plain Redis
        groups: list[list[Owned]] = []
        if self.settings.redis_cluster:
            by_room: dict[str, list[Owned]] = {}
            for o in owned.values():
                by_room.setdefault(o.part.room, []).append(o)
            groups = list(by_room.values())
        elif owned:
            groups = [list(owned.values())]
        workers = self.keys.workers(self.group)

        def beat(c: Any, key: str = workers) -> Any:
            return c.zadd(key, {self.worker_id: clock.now()})

        replies = await run_scripts(
            self.r, self.scripts, self.settings.redis_cluster, self.scripts.renew,
            [([o.lease_key for o in group], [self.worker_id, ttl]) for group in groups], beat)
        for group, ok in zip(groups, replies[1:], strict=True):
            for o, kept in zip(group, ok, strict=True):
                if not int(kept):
                    self.holdings.lose(o)

    async def live_workers(self) -> int:
        """Workers of this stage that heartbeated within one lease TTL: one that did not has
        lost its leases too, and counting it would keep the others at a share too small to
        take over its streams. Entries are removed after a few TTLs (status shows them)."""
        now = clock.now()
        ttl = self.settings.lease_ttl_ms / 1000
        key = self.keys.workers(self.group)
        pipe = self.r.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", now - WORKER_TTL_FACTOR * ttl)
        pipe.zcount(key, now - ttl, "+inf")
        _removed, fresh = await pipe.execute()
        return max(1, int(fresh))

    async def leave(self) -> None:
        """Leave the stage's worker set (stopping)."""
        await self.r.zrem(self.keys.workers(self.group), self.worker_id)
