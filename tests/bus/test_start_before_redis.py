"""A worker started before its Redis answers (started with it, restarting, loading its AOF)
waits for it; one whose Redis never comes stops with the one-line error; a refused login
stops at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from bus.connection import RedisUnavailable, connect
from bus.keys import Keys
from bus.settings import BusSettings
from ops.redis_servers import RedisCluster, RedisServer, free_port


def _worker(url: str, prefix: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "worker", "--input", "audio", "--output", "relayed"],
        env={**os.environ, "S2ST_REDIS_URL": url, "S2ST_KEY_PREFIX": prefix,
             "S2ST_WORKER_ID": "early", "S2ST_LOG_FORMAT": "json", **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_worker_started_before_its_redis_comes_up_with_it(tmp_path: Path) -> None:
    port = free_port()
    proc = _worker(f"redis://127.0.0.1:{port}/0", "tearly", S2ST_REDIS_WAIT_S="60")
    server = RedisServer(tmp_path / "redis", port=port)
    try:
        time.sleep(3.0)  # (the worker is up and asking by now)
        assert proc.poll() is None, proc.communicate()[0]
        server.start()
        r = redis.Redis.from_url(server.url)
        began = time.monotonic()
        while r.zscore(Keys("tearly").workers("relay"), "early") is None:
            assert time.monotonic() - began < 30, "the worker never joined"
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, out
        assert "waiting for it" in out and "Redis answers" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop(kill=True)


def test_a_worker_whose_redis_never_comes_stops_with_one_line() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    began = time.monotonic()
    proc = _worker(url, "tnever", S2ST_REDIS_WAIT_S="2")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 3, out
    assert time.monotonic() - began >= 2.0
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"s2st: cannot reach Redis at {url} (waited 2 s)"), out
    assert "Traceback" not in out


def test_a_worker_stopped_while_it_waits_for_redis_exits_0_at_once() -> None:
    proc = _worker(f"redis://127.0.0.1:{free_port()}/0", "tstop", S2ST_REDIS_WAIT_S="60")
    try:
        time.sleep(3.0)
        assert proc.poll() is None, proc.communicate()[0]
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, out
        assert time.monotonic() - stopped < 5, out
        assert "stopped before Redis answered" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_refused_login_is_not_waited_for(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        redis.Redis(port=server.port).config_set("requirepass", "right")
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        began = time.monotonic()
        with pytest.raises(RedisUnavailable, match="refused the login"):
            await connect(BusSettings(redis_url=url), wait_s=30)
        assert time.monotonic() - began < 5
        client = await connect(BusSettings(redis_url=url.replace("wrong", "right")), wait_s=30)
        assert await client.ping()
        await client.aclose()
    finally:
        server.stop(kill=True)


@pytest.mark.cluster
async def test_a_refused_login_on_a_cluster_is_not_waited_for(tmp_path: Path) -> None:
    """The cluster client wraps the refusal in a RedisClusterException, the same exception
    as a cluster not up yet: still one line at once, exit 3, not 30 s of waiting."""
    cluster = RedisCluster(tmp_path / "cluster", password="right").start()
    try:
        where = f"127.0.0.1:{cluster.nodes[0].port}/0"
        for url in (f"redis://:wrong@{where}", f"redis://nobody:right@{where}",
                    f"redis://{where}"):
            began = time.monotonic()
            with pytest.raises(RedisUnavailable, match="refused the login") as refused:
                await connect(BusSettings(redis_url=url, redis_cluster=True), wait_s=30)
            assert time.monotonic() - began < 5, url
            assert "\n" not in str(refused.value) and "wrong" not in str(refused.value)
        client = await connect(BusSettings(redis_url=f"redis://:right@{where}",
                                           redis_cluster=True), wait_s=30)
        assert await client.ping()
        await client.aclose()
        # a worker: the one-line error and exit 3, well within S2ST_REDIS_WAIT_S
        began = time.monotonic()
        proc = _worker(f"redis://:wrong@{where}", "tauth", S2ST_REDIS_WAIT_S="30",
                       S2ST_REDIS_CLUSTER="1")
        out = proc.communicate(timeout=60)[0]
        assert proc.returncode == 3, out
        assert time.monotonic() - began < 10, out
        last = out.strip().splitlines()[-1]
        assert last.startswith(f"s2st: Redis at redis://***@{where} refused the login: "), out
        assert "Traceback" not in out and "waiting for it" not in out, out
    finally:
        cluster.stop()


async def test_the_web_server_started_before_its_redis_waits_for_it(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    from player_agent.web.app import create_app

    port = free_port()
    server = RedisServer(tmp_path / "redis", port=port)
    app = create_app(BusSettings(redis_url=f"redis://127.0.0.1:{port}/0", redis_wait_s=30))
    loop = asyncio.get_running_loop()
    later = loop.call_later(1.5, server.start)
    try:
        began = time.monotonic()
        async with app.router.lifespan_context(app):
            assert time.monotonic() - began >= 1.5
            assert await app.state.redis.ping()
    finally:
        later.cancel()
        server.stop(kill=True)
