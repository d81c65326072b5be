"""Bus fixtures: real Redis servers (the local one, a cluster, a 6.2) and fast settings."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bus_helpers import fast_settings

from bus.settings import BusSettings
from bus.testing import scratch_client
from ops.redis_servers import RedisCluster, RedisServer


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis62(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    from ops.redis_servers import redis_server_binary

    server = RedisServer(tmp_path_factory.mktemp("r62"), binary=redis_server_binary("6.2"),
                         args=("--appendonly", "no")).start()
    yield server
    server.stop(kill=True)


@pytest.fixture(params=["standalone", "cluster"])
def backend(request: pytest.FixtureRequest, local_redis: str) -> tuple[str, bool]:
    """(url, is_cluster) for the hand-off suite, run on both a plain Redis and a cluster."""
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url, True
    return local_redis, False


@pytest.fixture
def settings(backend: tuple[str, bool]) -> BusSettings:
    url, cluster = backend
    return fast_settings(url, cluster=cluster)


@pytest.fixture
async def client(settings: BusSettings) -> AsyncIterator[Any]:
    async with scratch_client(settings) as r:
        yield r
