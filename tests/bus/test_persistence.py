"""Redis restarts with AOF, and the Redis 6.2 / 7.x differences in claiming trimmed entries."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from bus_helpers import fast_settings, outputs, produce, register, wait_for

from bus import metrics
from bus.connection import connect
from bus.keys import Partition
from bus.testing import RelayStage, run_worker
from ops.redis_servers import RedisServer, redis_server_binary

AOF = ("--appendonly", "yes", "--appendfsync", "always")


async def test_restart_with_aof_keeps_streams_groups_and_pending(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "aof", args=AOF).start()
    settings = fast_settings(server.url)
    part = Partition("roomp", "s1")
    ghost_key = settings.keys.stream("audio", Partition("roomp", "ghost"))
    client = await connect(settings)
    try:
        await register(client, settings.keys, [part], False)
        # an entry left pending by a consumer that never acknowledged it
        await client.xadd(ghost_key, {"x": "1"})
        await client.xgroup_create(ghost_key, "other", id="0")
        await client.xreadgroup("other", "ghost", {ghost_key: ">"}, count=1)
        async with run_worker(RelayStage(), settings):
            await produce(client, settings.keys, part, range(10))

            async def first_ten() -> bool:
                return len(await outputs(client, settings.keys, part)) == 10

            await wait_for(first_ten)
            server.stop()  # SIGTERM: clean shutdown, AOF on disk
            await asyncio.sleep(1.0)
            server = RedisServer(server.workdir, port=server.port, args=AOF).start()
            await produce(client, settings.keys, part, range(10, 20), end=True)

            async def all_twenty() -> bool:
                return len(await outputs(client, settings.keys, part)) == 21

            await wait_for(all_twenty, timeout=30)
        got = await outputs(client, settings.keys, part)
        assert got == [("audio", i) for i in range(20)] + [("control", 0)]
        pending = await client.xpending(ghost_key, "other")
        assert pending["pending"] == 1 and pending["consumers"][0]["name"] == b"ghost"
        groups = await client.xinfo_groups(settings.keys.stream("audio", part))
        assert [g["name"] for g in groups] == [b"relay"]
    finally:
        await client.aclose()
        server.stop(kill=True)


@pytest.fixture(params=["6.2", "7"])
def server_version(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    binary = redis_server_binary("6.2" if request.param == "6.2" else "system")
    server = RedisServer(tmp_path / request.param, binary=binary, args=("--appendonly", "no"))
    yield server.start()
    server.stop(kill=True)


async def test_trimmed_pending_entries_of_a_dead_worker(server_version: RedisServer) -> None:
    settings = fast_settings(server_version.url)
    part = Partition("roomt", "s1")
    key = settings.keys.stream("audio", part)
    client = await connect(settings)
    version = (await client.info("server"))["redis_version"]
    try:
        await register(client, settings.keys, [part], False)
        await produce(client, settings.keys, part, range(5))
        await client.xgroup_create(key, "relay", id="0")
        # a worker read five entries and died; then retention trimmed them away
        await client.xreadgroup("relay", "dead-worker", {key: ">"}, count=5)
        await client.xtrim(key, maxlen=0, approximate=False)
        await produce(client, settings.keys, part, range(5, 8))
        before = metrics.LOST_ENTRIES.labels("relay")._value.get()
        async with run_worker(RelayStage(), settings):

            async def three() -> bool:
                return len(await outputs(client, settings.keys, part)) == 3

            await wait_for(three)
            await asyncio.sleep(0.3)
        assert [s for _t, s in await outputs(client, settings.keys, part)] == [5, 6, 7]
        assert (await client.xpending(key, "relay"))["pending"] == 0, version
        assert metrics.LOST_ENTRIES.labels("relay")._value.get() - before == 5, version
    finally:
        await client.aclose()
