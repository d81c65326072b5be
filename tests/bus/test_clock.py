"""The process clock in Redis's time (bus/clock.py): measured against the real Redis, with
this host's clock shifted for real (libfaketime) or by the S2ST_CLOCK_SKEW_S setting."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from bus_helpers import LOCAL_URL, fast_settings

from bus import clock
from bus.connection import connect, make_client
from bus.keys import Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import delete_prefix

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_clock() -> Iterator[None]:
    """Each test starts from this host's clock and leaves it so (the clock is per process)."""
    clock.reset()
    yield
    clock.reset()


def redis_time(r: redis.Redis) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6


def faketime_argv(shift: str) -> list[str]:
    if shutil.which("faketime") is None:
        pytest.fail("faketime is not installed (apt-get install faketime; ./run setup does)")
    return ["faketime", "-f", shift]


# a process of its own that connects as every s2st process does, and says what it sees
_PROBE = """
import asyncio, json, time
from bus import clock
from bus.connection import connect
from bus.settings import BusSettings

async def main():
    client = await connect(BusSettings())
    seconds, micros = await client.time()
    local = time.time()
    redis_now = seconds + micros / 1e6
    await client.aclose()
    m = clock.last()
    print(json.dumps({"offset": m.offset, "round_trip": m.round_trip,
                      "local_minus_redis": local - redis_now,
                      "now_minus_redis": clock.now() - redis_now}))

asyncio.run(main())
"""


def probe(*prefix: str, **env: str) -> dict[str, float]:
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**{k: v for k, v in os.environ.items() if not k.startswith("S2ST_")},
                         "S2ST_REDIS_URL": LOCAL_URL, "S2ST_LOG_LEVEL": "warning",
                         "FAKETIME_DONT_FAKE_MONOTONIC": "1", **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_redis_and_this_process_share_a_clock_without_faketime(local_redis: str) -> None:
    r = redis.Redis.from_url(local_redis)
    assert abs(time.time() - redis_time(r)) < 0.5  # the reference the tests below rely on


async def test_an_unskewed_process_measures_an_offset_of_about_zero(
        backend: tuple[str, bool]) -> None:
    url, cluster = backend
    client = await connect(fast_settings(url, cluster=cluster))
    try:
        m = clock.last()
        assert m is not None and 0 < m.round_trip < 1.0
        # the error of the estimate is at most half the round trip of the sample kept
        assert abs(m.offset) <= m.round_trip / 2 + 0.003, m
        again = await clock.measure(client, samples=3, node=client.get_node_from_key("x")
                                    if cluster else None)
        assert abs(again.offset) <= again.round_trip / 2 + 0.003, again
    finally:
        await client.aclose()


@pytest.mark.parametrize("shift", [5.0, -5.0])
def test_under_faketime_the_measured_offset_cancels_the_shift(
        local_redis: str, shift: float) -> None:
    seen = probe(*faketime_argv(f"{shift:+g}s"))
    # the process's own clock really is shifted (and Redis's is not: it runs unfaked) ...
    assert abs(seen["local_minus_redis"] - shift) < 0.5, seen
    # ... the measured offset is that shift, to a few ms ...
    assert abs(seen["offset"] + shift) <= seen["round_trip"] / 2 + 0.005, seen
    # ... so its timestamps are Redis's time
    assert abs(seen["now_minus_redis"]) < 0.05, seen
    unskewed = probe()
    assert abs(unskewed["offset"]) <= unskewed["round_trip"] / 2 + 0.005, unskewed
    assert abs(unskewed["local_minus_redis"]) < 0.5, unskewed


def test_the_skew_setting_shifts_the_reading_and_the_offset_cancels_it(local_redis: str) -> None:
    seen = probe(S2ST_CLOCK_SKEW_S="7.5")
    assert abs(seen["offset"] + 7.5) <= seen["round_trip"] / 2 + 0.005, seen
    assert abs(seen["now_minus_redis"]) < 0.05, seen


async def test_a_new_skew_is_measured_again_at_the_next_connect(local_redis: str) -> None:
    r = redis.Redis.from_url(local_redis)
    client = await connect(fast_settings(local_redis, clock_skew_s=-3.0))
    await client.aclose()
    assert clock.skew() == -3.0 and abs(clock.offset() - 3.0) < 0.01
    assert abs(clock.local() - (time.time() - 3.0)) < 0.01
    assert abs(clock.now() - redis_time(r)) < 0.05
    client = await connect(fast_settings(local_redis))
    await client.aclose()
    assert clock.skew() == 0.0 and abs(clock.offset()) < 0.01


async def test_the_background_measurement_follows_a_clock_step(local_redis: str) -> None:
    settings = fast_settings(local_redis)
    clock.set_offset(30.0, round_trip=0.0001)  # as if this host's clock had just been stepped
    task = clock.keep_synced(lambda: make_client(settings), every_s=0.05)
    try:
        deadline = time.monotonic() + 10
        while abs(clock.offset()) > 0.01:
            assert time.monotonic() < deadline, clock.last()
            await asyncio.sleep(0.05)
    finally:
        task.cancel()


async def test_the_background_measurement_survives_a_redis_that_is_away() -> None:
    gone = BusSettings(redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    clock.set_offset(2.5)
    task = clock.keep_synced(lambda: make_client(gone), every_s=0.02)
    try:
        await asyncio.sleep(0.5)
        assert not task.done()  # failed rounds neither end the loop nor raise
        assert clock.offset() == 2.5  # the last offset stays
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_user_without_time_connects_on_its_own_clock_and_the_janitor_works(
        local_redis: str) -> None:
    """An ACL file from before the clock (no +time): the process warns and keeps its own clock;
    the expiry script falls back to the cutoff the worker gives it."""
    user, password = "tclk" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    admin = redis.Redis.from_url(local_redis)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                      channels=["*"], commands=["+@all", "-time"])
    settings = fast_settings(f"redis://{user}:{password}@127.0.0.1:6379/0")
    try:
        client = await connect(settings)
        try:
            assert clock.last() is None and clock.now() == pytest.approx(time.time(), abs=0.01)
            registry = Registry(client, settings.keys)
            await registry.register_session("clk", "live", "en")
            await registry.register_session("clk", "stale", "en")
            now_ms = int(redis_time(admin) * 1000)
            await client.hset(settings.keys.alive("clk"), "stale", now_ms - 10_000)
            infos = {i.session: i for i in await registry.sessions("clk")}
            for s, expected in (("live", False), ("stale", True)):
                audio = settings.keys.stream("audio", Partition("clk", s))
                assert await registry.expire_stale(infos[s], 5.0, audio) is expected, s
        finally:
            await delete_prefix(client, settings.key_prefix)
            await client.aclose()
    finally:
        admin.acl_deluser(user)


class _NoTime:
    """A client whose user may not run TIME (an ACL file from before the clock)."""

    async def execute_command(self, *args: Any, **kw: Any) -> Any:
        raise redis.exceptions.NoPermissionError("this user has no permissions to run 'time'")


async def test_a_redis_refusing_time_leaves_this_hosts_clock() -> None:
    await clock.sync(_NoTime())
    assert clock.last() is None and clock.offset() == 0.0
    assert abs(clock.now() - time.time()) < 0.01


async def test_the_janitor_compares_heartbeats_with_redis_time(local_redis: str) -> None:
    """The expiry script reads Redis's clock: a worker's own (wrong) ``now`` neither ends a
    live session early nor keeps a stale one."""
    settings = fast_settings(local_redis)
    client = await connect(settings)
    r = redis.Redis.from_url(local_redis)
    try:
        registry = Registry(client, settings.keys)
        await registry.register_session("clk", "live", "en")
        await registry.register_session("clk", "stale", "en")
        now_ms = int(redis_time(r) * 1000)
        await client.hset(settings.keys.alive("clk"), "live", now_ms - 2_000)
        await client.hset(settings.keys.alive("clk"), "stale", now_ms - 10_000)
        infos = {i.session: i for i in await registry.sessions("clk")}
        audio = {s: settings.keys.stream("audio", Partition("clk", s)) for s in infos}
        # a worker whose clock is 100 s ahead: its cutoff would end both
        assert not await registry.expire_stale(infos["live"], 5.0, audio["live"],
                                               now=time.time() + 100)
        # one 100 s behind: its cutoff would end neither
        assert await registry.expire_stale(infos["stale"], 5.0, audio["stale"],
                                           now=time.time() - 100)
        status = await client.hgetall(settings.keys.status("clk"))
        assert status == {b"live": b"active", b"stale": b"ended"}
    finally:
        await delete_prefix(client, settings.key_prefix)
        await client.aclose()
