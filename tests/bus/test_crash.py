"""Worker processes killed with SIGKILL or stopped with SIGTERM (real subprocesses)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

from bus_helpers import outputs, produce, register, wait_for, worker_env

from bus.events import decode
from bus.keys import Partition
from bus.settings import BusSettings
from bus.testing import delete_prefix
from tests.timing import met_in_one_run_async

N = 40


def _spawn(settings: BusSettings, worker_id: str, delay_ms: float = 0) -> subprocess.Popen[bytes]:
    env = worker_env(settings, worker_id)
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "worker", "--input", "audio", "--output", "relayed",
         "--delay-ms", str(delay_ms)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


async def _leases_of(client: Any, settings: BusSettings, parts: list[Partition]) -> list[str]:
    vals = [await client.get(settings.keys.lease("relay", "audio", p)) for p in parts]
    return [v.decode() if v else "" for v in vals]


async def _pending_of(client: Any, settings: BusSettings, part: Partition,
                      consumer: str) -> set[str]:
    """Ids of the entries of a session's input that ``consumer`` read and did not acknowledge."""
    rows = await client.xpending_range(settings.keys.stream("audio", part), "relay", min="-",
                                       max="+", count=1000, consumername=consumer)
    return {r["message_id"].decode() for r in rows}


async def test_sigkill_mid_stream_moves_sessions_without_loss_or_duplicates(
        settings: BusSettings, client: Any) -> None:
    """A worker SIGKILLed mid-stream: its sessions move to the other worker within one lease
    TTL and a few discovery periods, and nothing is lost or repeated.

    The move is a wall-clock bound that needs the CPU when the lease runs out, so it is met in
    one of up to three kills (each on a fresh key prefix, checked for loss and duplicates
    every time); a takeover that really waits too long misses it every time."""
    # a lease outlives its last renewal by one TTL; B looks every discovery period
    bound = (settings.lease_ttl_ms + 5 * settings.discovery_ms) / 1000
    runs = 0

    async def one_kill() -> float:
        nonlocal runs
        runs += 1
        attempt = settings if runs == 1 else settings.model_copy(
            update={"key_prefix": f"{settings.key_prefix}-{runs}"})
        try:
            return await _kill_mid_stream(attempt, client)
        finally:
            if attempt is not settings:
                await delete_prefix(client, attempt.key_prefix)

    await met_in_one_run_async(one_kill, lambda took: took <= bound,
                               f"seconds from A's kill to B owning its streams (bound {bound} s)")


async def _kill_mid_stream(settings: BusSettings, client: Any) -> float:
    """Seconds from A's SIGKILL to B owning all A's sessions; the outputs are checked."""
    parts = [Partition(f"room{i % 2}", f"s{i}") for i in range(6)]
    await register(client, settings.keys, parts, settings.redis_cluster)
    # A is slow (40 ms an entry): when it is killed it holds entries read and not acknowledged
    a = _spawn(settings, "worker-a", delay_ms=40)
    b = None
    try:
        async def a_owns_all() -> bool:
            return all(v == "worker-a" for v in await _leases_of(client, settings, parts))

        await wait_for(a_owns_all, timeout=20)
        b = _spawn(settings, "worker-b", delay_ms=5)

        async def shared() -> bool:  # B is up: A shed its extra streams to it
            leases = await _leases_of(client, settings, parts)
            return "worker-b" in leases and leases.count("worker-a") == len(parts) // 2

        await wait_for(shared, timeout=20)
        killed: list[Partition] = []
        in_flight: dict[Partition, set[str]] = {}
        for start in range(0, N, 5):
            await asyncio.gather(*(produce(client, settings.keys, p, range(start, start + 5))
                                   for p in parts))
            if start == 15:
                # A is mid-stream: entries read, not yet committed
                leases = await _leases_of(client, settings, parts)
                killed = [p for p, v in zip(parts, leases, strict=True) if v == "worker-a"]
                a.send_signal(signal.SIGKILL)
                a.wait(timeout=10)
                t_kill = time.monotonic()
                # nothing can acknowledge them now, and B cannot claim them before the lease
                # expires: this is what A held when it died
                in_flight = {p: await _pending_of(client, settings, p, "worker-a")
                             for p in killed}
            await asyncio.sleep(0.05)
        assert killed, "A owned nothing when it was killed"
        assert all(in_flight.values()), {str(p): len(ids) for p, ids in in_flight.items()}

        async def moved() -> bool:
            leases = await _leases_of(client, settings, killed)
            return all(v == "worker-b" for v in leases)

        await wait_for(moved, timeout=settings.lease_ttl_ms / 1000 + 15, interval=0.02)
        took = time.monotonic() - t_kill
        for p in parts:
            await produce(client, settings.keys, p, range(0), end=True)

        async def all_done() -> bool:
            for p in parts:
                if len(await outputs(client, settings.keys, p)) < N + 1:
                    return False
            return True

        await wait_for(all_done, timeout=40)
        await asyncio.sleep(0.3)
        for p in parts:
            got = await outputs(client, settings.keys, p)
            assert got == [("audio", i) for i in range(N)] + [("control", 0)], p
            pending = await client.xpending(settings.keys.stream("audio", p), "relay")
            assert pending["pending"] == 0
        # what A held in flight was handled by B, once
        for p in killed:
            by_id = {eid.decode(): int(f[b"seq"])
                     for eid, f in await client.xrange(settings.keys.stream("audio", p))}
            writers = {}
            for _id, fields in await client.xrange(settings.keys.stream("relayed", p)):
                event = decode(fields)
                writers[event.seq] = event.trace[-1].worker
            assert {writers[by_id[eid]] for eid in in_flight[p]} == {"worker-b"}, p
        return round(took, 3)
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


async def test_sigterm_drains_releases_and_exits_zero(settings: BusSettings, client: Any) -> None:
    parts = [Partition("roomt", f"s{i}") for i in range(3)]
    await register(client, settings.keys, parts, settings.redis_cluster)
    proc = _spawn(settings, "worker-t", delay_ms=20)
    try:
        async def owns_all() -> bool:
            return all(v == "worker-t" for v in await _leases_of(client, settings, parts))

        await wait_for(owns_all, timeout=20)
        for p in parts:
            await produce(client, settings.keys, p, range(20))
        await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
        assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
        assert await _leases_of(client, settings, parts) == ["", "", ""]
        # what it read before the signal was finished and acknowledged, nothing left in flight
        for p in parts:
            info = await client.xpending(settings.keys.stream("audio", p), "relay")
            assert info["pending"] == 0
            got = await outputs(client, settings.keys, p)
            assert [s for _t, s in got] == list(range(len(got)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
