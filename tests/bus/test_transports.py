"""Reaching Redis other ways (a Unix socket, Redis 6.2), and the plain-Redis bell layout: one
write that touches many rooms is read in one round."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from bus_helpers import fast_settings, outputs, register, wait_for

from bus.connection import connect
from bus.keys import BELL_MAXLEN, Partition
from bus.producer import Publisher
from bus.runtime import Worker
from bus.settings import BusSettings
from bus.testing import RelayStage, delete_prefix, make_chunk, run_worker
from ops.redis_servers import RedisServer


class CountsReads(Worker):
    """Records how many entries each fenced read that took any brought back."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.reads: list[int] = []

    async def _read_fenced(self, keys: list[str], count: int, starts: list[str]) -> list[Any]:
        reply = await super()._read_fenced(keys, count, starts)
        got = sum(len(e) for _k, e in reply if e not in (b"LOST", "LOST"))
        if got:
            self.reads.append(got)
        return reply


async def _relay_all(settings: BusSettings, parts: list[Partition]) -> list[int]:
    """Start a counting relay worker on ``parts``, then write one chunk to each of them in one
    transaction (their bells rung as the publisher does); the sizes of the reads that took
    them."""
    client = await connect(settings)
    try:
        await register(client, settings.keys, parts, settings.redis_cluster)
        worker = CountsReads(RelayStage(), settings)
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.started.wait(), timeout=10)

            async def owned() -> bool:
                return all([await client.exists(settings.keys.lease("relay", "audio", p))
                            for p in parts])

            await wait_for(owned)
            await asyncio.sleep(0.5)  # the first reads are over: the worker waits on its bells
            worker.reads.clear()
            pipe = client.pipeline(transaction=True)
            rung: dict[str, list[str]] = {}
            for p in parts:
                key = settings.keys.stream("audio", p)
                pipe.xadd(key, make_chunk(p.room, p.session, 0).to_fields())
                bell = settings.keys.bell_of(key)
                assert bell is not None
                rung.setdefault(bell, []).append(key)
            for bell, keys in rung.items():
                pipe.xadd(bell, {"keys": " ".join(keys)}, maxlen=BELL_MAXLEN, approximate=True)
            await pipe.execute()

            async def relayed() -> bool:
                return all([len(await outputs(client, settings.keys, p)) == 1 for p in parts])

            await wait_for(relayed, timeout=10)
            return worker.reads
        finally:
            worker.stop()
            await asyncio.wait_for(task, timeout=30)
    finally:
        await delete_prefix(client, settings.key_prefix)
        await client.aclose()


async def test_one_write_to_ten_rooms_is_read_in_one_round(local_redis: str) -> None:
    # Redis before 7.2 answers a blocked XREAD over several keys with the first key written
    # only: with one bell per room the worker read one room, then the nine others.
    parts = [Partition(f"room{i}", "s") for i in range(10)]
    settings = fast_settings(local_redis, poll_ms=60_000)
    assert await _relay_all(settings, parts) == [10]


async def test_the_bus_runs_on_redis_6_2(redis62: RedisServer) -> None:
    parts = [Partition(f"room{i}", "s") for i in range(4)]
    settings = fast_settings(redis62.url, poll_ms=60_000)
    assert await _relay_all(settings, parts) == [4]


@pytest.fixture
def unix_redis(tmp_path: Path) -> Any:
    sock = tmp_path / "redis.sock"
    server = RedisServer(tmp_path / "data", args=("--unixsocket", str(sock),
                                                  "--unixsocketperm", "700")).start()
    yield f"unix://{sock}"
    server.stop(kill=True)


async def test_workers_and_publishers_reach_redis_over_a_unix_socket(unix_redis: str) -> None:
    settings = fast_settings(unix_redis)
    parts = [Partition("roomu", f"s{i}") for i in range(3)]
    client = await connect(settings)
    try:
        await register(client, settings.keys, parts, cluster=False)
        publisher = Publisher(client, settings)
        async with run_worker(RelayStage(), settings):
            for p in parts:
                await publisher.publish_many(
                    settings.keys.stream("audio", p),
                    [make_chunk(p.room, p.session, s) for s in range(5)])

            async def relayed() -> bool:
                return all([len(await outputs(client, settings.keys, p)) == 5 for p in parts])

            await wait_for(relayed, timeout=20)
    finally:
        await client.aclose()
