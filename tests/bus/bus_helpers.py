"""Producing and collecting events in bus tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from bus.events import decode
from bus.keys import BELL_MAXLEN, Keys, Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import end_marker, make_chunk


async def register(client: Any, keys: Keys, sessions: list[Partition], cluster: bool) -> None:
    reg = Registry(client, keys, cluster=cluster)
    for p in sessions:
        await reg.register_session(p.room, p.session, "en")


async def produce(client: Any, keys: Keys, part: Partition, seqs: range, *,
                  end: bool = False) -> None:
    """Add chunks (and the end marker) to the session's audio stream, then ring its bell as a
    capture agent's publisher does (bus/producer.py)."""
    key = keys.stream("audio", part)
    for seq in seqs:
        await client.xadd(key, make_chunk(part.room, part.session, seq).to_fields())
    if end:
        await client.xadd(key, end_marker(part.room, part.session).to_fields())
    await client.xadd(keys.bell(part.room, "audio"), {"keys": key}, maxlen=BELL_MAXLEN,
                      approximate=True)


async def outputs(client: Any, keys: Keys, part: Partition,
                  family: str = "relayed") -> list[tuple[str, int]]:
    """(type, seq) of every entry of the session's output stream, in stream order."""
    out = []
    for _id, fields in await client.xrange(keys.stream(family, part)):
        event = decode(fields)
        out.append((event.type, int(getattr(event, "seq", -1))))
    return out


async def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def dead_letters(client: Any, keys: Keys, room: str) -> list[Any]:
    return [decode(f) for _id, f in await client.xrange(keys.deadletter(room))]


LOCAL_URL = "redis://127.0.0.1:6379/0"


def fast_settings(url: str = LOCAL_URL, *, cluster: bool = False, **kw: Any) -> BusSettings:
    """Settings with short leases so takeover tests run in seconds, and a unique key prefix."""
    values: dict[str, Any] = dict(
        redis_url=url, redis_cluster=cluster, key_prefix="t" + uuid.uuid4().hex[:10],
        lease_ttl_ms=1200, heartbeat_ms=300, discovery_ms=150, block_ms=50,
        retry_backoff_ms=10, log_level="warning",
    )
    values.update(kw)
    return BusSettings(**values)


def worker_env(settings: BusSettings, worker_id: str) -> dict[str, str]:
    """The environment of a worker subprocess with ``settings`` (fast leases, its prefix)."""
    import os

    return {
        **os.environ,
        "S2ST_REDIS_URL": settings.redis_url,
        "S2ST_REDIS_CLUSTER": "1" if settings.redis_cluster else "0",
        "S2ST_KEY_PREFIX": settings.key_prefix,
        "S2ST_WORKER_ID": worker_id,
        "S2ST_LEASE_TTL_MS": str(settings.lease_ttl_ms),
        "S2ST_HEARTBEAT_MS": str(settings.heartbeat_ms),
        "S2ST_DISCOVERY_MS": str(settings.discovery_ms),
        "S2ST_BLOCK_MS": str(settings.block_ms),
        "S2ST_LOG_LEVEL": "warning",
    }
