"""Outputs published early (``ctx.publish``) and produced again for the same input are written
once: only the (session, stage, seq, part) check of the commit script can drop them, since a
publish carries no input acknowledgement and the input watermark has not moved past the entry.
Run against a plain Redis and a Redis Cluster, like the hand-off suite."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from bus_helpers import dead_letters, produce, register, wait_for, worker_env
from publish_worker import LANG, OUTPUT_FAMILY, EarlyPublisher, pieces

from bus.keys import Partition
from bus.settings import BusSettings
from bus.testing import run_worker

N = 6
ALL = [(seq, part) for seq in range(N) for part in (0, 1)]
WORKER_SCRIPT = Path(__file__).resolve().parent / "publish_worker.py"


def _order(got: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    return [(seq, part) for seq, part, _worker in got]


async def _no_pending(client: Any, key: str, group: str) -> None:
    info = await client.xpending(key, group)
    assert info["pending"] == 0, info


async def test_outputs_published_before_a_failure_are_not_written_again(
        settings: BusSettings, client: Any) -> None:
    """The handler publishes part 0, then fails; the retry publishes part 0 again."""
    part = Partition("roomp", "s1")
    await register(client, settings.keys, [part], settings.redis_cluster)
    out = settings.keys.stream(OUTPUT_FAMILY, Partition(part.room, part.session, LANG))
    stage = EarlyPublisher(fail_once={1, 4})
    async with run_worker(stage, settings):
        await produce(client, settings.keys, part, range(N))

        async def all_written() -> bool:
            return len(await pieces(client, out)) >= len(ALL)

        await wait_for(all_written)
        await asyncio.sleep(0.3)  # a late second copy would land by now
    assert _order(await pieces(client, out)) == ALL
    # the duplicates were really offered: part 0 of the failed seqs was published twice
    assert stage.attempts[1] == [0, 1] and stage.attempts[4] == [0, 1], stage.attempts
    assert stage.produced.count((1, 0)) == 2 and stage.produced.count((4, 0)) == 2
    assert await dead_letters(client, settings.keys, part.room) == []
    await _no_pending(client, settings.keys.stream("audio", part), stage.name)


def _spawn(settings: BusSettings, worker_id: str, hang_seq: int) -> subprocess.Popen[bytes]:
    env = worker_env(settings, worker_id)
    return subprocess.Popen([sys.executable, str(WORKER_SCRIPT), "--hang-seq", str(hang_seq)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def test_outputs_published_by_a_killed_worker_are_not_written_again(
        settings: BusSettings, client: Any) -> None:
    """Worker A publishes part 0 of seq 3 and is killed (SIGKILL) before acknowledging it; B
    takes the stream over, gets seq 3 again and publishes the same part 0: it is dropped."""
    hang = 3
    part = Partition("roomk", "s1")
    await register(client, settings.keys, [part], settings.redis_cluster)
    audio = settings.keys.stream("audio", part)
    out = settings.keys.stream(OUTPUT_FAMILY, Partition(part.room, part.session, LANG))
    lease = settings.keys.lease(EarlyPublisher.name, "audio", part)
    a = _spawn(settings, "worker-a", hang)
    try:
        async def a_owns() -> bool:
            return await client.get(lease) == b"worker-a"

        await wait_for(a_owns, timeout=20)
        await produce(client, settings.keys, part, range(N))

        async def a_published_early() -> bool:
            return (hang, 0) in _order(await pieces(client, out))

        await wait_for(a_published_early)
        entry_of = {int(f[b"seq"]): eid.decode() for eid, f in await client.xrange(audio)}
        pending = await client.xpending_range(audio, EarlyPublisher.name, min="-", max="+",
                                              count=100, consumername="worker-a")
        pending_ids = {p["message_id"].decode() for p in pending}
        assert entry_of[hang] in pending_ids  # read, its first piece written, not acknowledged
        assert _order(await pieces(client, out)) == ALL[:2 * hang + 1]

        b_stage = EarlyPublisher()
        b_settings = settings.model_copy(update={"worker_id": "worker-b"})
        async with run_worker(b_stage, b_settings):
            a.send_signal(signal.SIGKILL)
            a.wait(timeout=10)

            async def all_written() -> bool:
                return len(await pieces(client, out)) >= len(ALL)

            await wait_for(all_written)
            await asyncio.sleep(0.3)  # a late second copy would land by now
            got = await pieces(client, out)
        assert _order(got) == ALL
        # the part 0 kept is A's; B delivered seq 3 again and offered its part 0 too
        assert (hang, 0, "worker-a") in got and (hang, 1, "worker-b") in got
        assert b_stage.attempts[hang] and b_stage.attempts[hang][0] >= 1, b_stage.attempts
        assert (hang, 0) in b_stage.produced
        await _no_pending(client, audio, EarlyPublisher.name)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(timeout=10)
