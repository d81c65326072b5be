"""The hand-off suite, run against a plain Redis and a 3-master Redis Cluster."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

from bus_helpers import dead_letters, outputs, produce, register, wait_for

from bus.events import DeadLetter
from bus.keys import Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import RelayStage, make_chunk, run_worker

N_EVENTS = 30


def _sessions(n: int, rooms: int = 4) -> list[Partition]:
    return [Partition(f"room{i % rooms}", f"s{i}") for i in range(n)]


async def _all_relayed(client: Any, settings: BusSettings, parts: list[Partition],
                       n: int) -> bool:
    for p in parts:
        if len(await outputs(client, settings.keys, p)) < n:
            return False
    return True


async def test_two_workers_share_twenty_sessions(settings: BusSettings, client: Any) -> None:
    parts = _sessions(20)
    a, b = RelayStage(), RelayStage()
    async with run_worker(a, settings), run_worker(b, settings.model_copy(
            update={"worker_id": settings.worker_id + "-b"})):
        # sessions appear while the workers run: discovered without restarts
        await register(client, settings.keys, parts, settings.redis_cluster)
        for start in range(0, N_EVENTS, 10):
            await asyncio.gather(*(produce(client, settings.keys, p, range(start, start + 10))
                                   for p in parts))
        for p in parts:
            await produce(client, settings.keys, p, range(0), end=True)
        await wait_for(lambda: _all_relayed(client, settings, parts, N_EVENTS + 1), timeout=30)
    for p in parts:
        got = await outputs(client, settings.keys, p)
        assert got == [("audio", i) for i in range(N_EVENTS)] + [("control", 0)], p
    assert a.handled > 0 and b.handled > 0, (a.handled, b.handled)
    assert a.handled + b.handled == 20 * (N_EVENTS + 1)  # events and end markers, once each


async def test_poison_entry_is_dead_lettered_and_others_go_on(settings: BusSettings,
                                                               client: Any) -> None:
    parts = _sessions(2, rooms=1)
    await register(client, settings.keys, parts, settings.redis_cluster)
    stage = RelayStage(fail_seqs={3})
    async with run_worker(stage, settings):
        for p in parts:
            await produce(client, settings.keys, p, range(6))

        async def done() -> bool:
            return all([len(await outputs(client, settings.keys, p)) == 5 for p in parts])

        await wait_for(done)
    for p in parts:
        assert [s for _t, s in await outputs(client, settings.keys, p)] == [0, 1, 2, 4, 5]
    dead = await dead_letters(client, settings.keys, "room0")
    assert len(dead) == 2
    assert all(isinstance(d, DeadLetter) and "seq 3 is poison" in d.error for d in dead)
    assert all(d.attempts == settings.max_attempts and d.stage == "relay" for d in dead)
    # nothing is left pending
    for p in parts:
        info = await client.xpending(settings.keys.stream("audio", p), "relay")
        assert info["pending"] == 0


async def test_malformed_entries_added_by_redis_cli(settings: BusSettings, client: Any,
                                                    backend: tuple[str, bool]) -> None:
    part = Partition("roomx", "s1")
    other = Partition("roomx", "s2")
    await register(client, settings.keys, [part], settings.redis_cluster)
    key = settings.keys.stream("audio", part)
    port = backend[0].rsplit(":", 1)[1].split("/")[0]
    wrong_session = make_chunk(other.room, other.session, 0).to_fields()
    cli = ["redis-cli", "-c", "-p", port]
    for fields in (["garbage", "1"], ["type", "audio", "v", "1", "seq", "x"],
                   [x for kv in wrong_session.items() for x in (kv[0], kv[1] if isinstance(kv[1], str) else "bin")]):
        subprocess.run([*cli, "XADD", key, "*", *fields], check=True, capture_output=True)
    async with run_worker(RelayStage(), settings):
        await produce(client, settings.keys, part, range(3))

        async def done() -> bool:
            return len(await outputs(client, settings.keys, part)) == 3

        await wait_for(done)
        dead = await dead_letters(client, settings.keys, "roomx")
    assert len(dead) == 3
    assert all(d.error.startswith("malformed") for d in dead)
    assert dead[0].original == {"garbage": b"1"}


async def test_redelivered_inputs_make_no_second_output(settings: BusSettings,
                                                        client: Any) -> None:
    part = Partition("roomd", "s1")
    await register(client, settings.keys, [part], settings.redis_cluster)
    async with run_worker(RelayStage(), settings):
        await produce(client, settings.keys, part, range(10))

        async def ten() -> bool:
            return len(await outputs(client, settings.keys, part)) == 10

        await wait_for(ten)
        # rewind the group: every entry is delivered again
        await client.xgroup_setid(settings.keys.stream("audio", part), "relay", "0")
        await produce(client, settings.keys, part, range(10, 12))

        async def twelve() -> bool:
            return len(await outputs(client, settings.keys, part)) >= 12

        await wait_for(twelve)
        await asyncio.sleep(0.5)
    assert [s for _t, s in await outputs(client, settings.keys, part)] == list(range(12))


async def test_a_fenced_worker_writes_nothing(settings: BusSettings, client: Any) -> None:
    part = Partition("roomf", "s1")
    await register(client, settings.keys, [part], settings.redis_cluster)
    lease = settings.keys.lease("relay", "audio", part)
    async with run_worker(RelayStage(), settings) as worker:
        await produce(client, settings.keys, part, range(3))

        async def three() -> bool:
            return len(await outputs(client, settings.keys, part)) == 3

        await wait_for(three)
        # someone else takes the lease (as after an expiry): the worker must stop writing
        await client.set(lease, "intruder", px=3000)

        async def dropped() -> bool:
            return part not in worker.owned

        await wait_for(dropped, timeout=5)
        await produce(client, settings.keys, part, range(3, 6))
        await asyncio.sleep(0.5)
        assert len(await outputs(client, settings.keys, part)) == 3
        # the intruder vanishes; the stream is taken back and finished, exactly once
        await client.delete(lease)

        async def six() -> bool:
            return len(await outputs(client, settings.keys, part)) == 6

        await wait_for(six)
    assert [s for _t, s in await outputs(client, settings.keys, part)] == list(range(6))


async def test_silent_session_is_ended_and_finished(settings: BusSettings, client: Any) -> None:
    fast = settings.model_copy(update={"session_timeout_s": 1.0})
    part = Partition("rooms", "s1")
    reg = Registry(client, settings.keys, cluster=settings.redis_cluster)
    await reg.register_session(part.room, part.session, "en")
    await produce(client, settings.keys, part, range(2))
    async with run_worker(RelayStage(), fast) as worker:

        async def ended() -> bool:
            info = await reg.session(part.room, part.session)
            return info is not None and not info.active and part not in worker.owned

        await wait_for(ended, timeout=10)
    got = await outputs(client, settings.keys, part)
    assert got == [("audio", 0), ("audio", 1), ("control", 0)]


async def test_a_finished_stream_is_never_taken_again(settings: BusSettings, client: Any) -> None:
    part = Partition("roomz", "s1")
    reg = Registry(client, settings.keys, cluster=settings.redis_cluster)
    await reg.register_session(part.room, part.session, "en")
    async with run_worker(RelayStage(), settings) as worker:
        await produce(client, settings.keys, part, range(2), end=True)

        async def finished() -> bool:
            return (part not in worker.owned and len(await outputs(client, settings.keys,
                                                                   part)) == 3)

        await wait_for(finished)
        # a discovery round that looked before the stream finished tries to take it again
        worker._finished_cache.discard(part)
        info = await reg.session(part.room, part.session)
        assert info is not None
        assert not await worker._try_acquire(part, info)
        assert part not in worker.owned
        assert await client.get(settings.keys.lease("relay", "audio", part)) is None


async def test_a_session_that_ended_before_its_stream_existed_is_still_handled(
        settings: BusSettings, client: Any) -> None:
    """A short session replayed as fast as possible ends before the upstream stage wrote the
    first entry of this stage's input: the stage must wait for it, not give the stream up."""
    part = Partition("roome", "s1")
    reg = Registry(client, settings.keys, cluster=settings.redis_cluster)
    await reg.register_session(part.room, part.session, "en")
    await reg.end_session(part.room, part.session, "replayed")
    downstream = RelayStage("relay2", input_family="relayed", output_family="relayed2")
    async with run_worker(downstream, settings) as worker:
        await asyncio.sleep(5 * settings.discovery_ms / 1000)  # several discovery rounds
        assert part not in worker._finished_cache
        assert not await client.hexists(settings.keys.progress(part.room),
                                        settings.keys.finished_field("relay2", "relayed", part))
        async with run_worker(RelayStage(), settings.model_copy(
                update={"worker_id": settings.worker_id + "-up"})):
            await produce(client, settings.keys, part, range(3), end=True)

            async def through() -> bool:
                return len(await outputs(client, settings.keys, part, "relayed2")) == 4

            await wait_for(through)
    got = await outputs(client, settings.keys, part, "relayed2")
    assert got == [("audio", 0), ("audio", 1), ("audio", 2), ("control", 0)]


async def test_a_stream_never_written_is_given_up_after_the_retention_window(
        settings: BusSettings, client: Any) -> None:
    part = Partition("roomg", "s1")
    reg = Registry(client, settings.keys, cluster=settings.redis_cluster)
    await reg.register_session(part.room, part.session, "en")
    await reg.end_session(part.room, part.session, "stopped")
    short = settings.model_copy(update={"retention_s": 1.0})
    async with run_worker(RelayStage(), short) as worker:
        fin = settings.keys.finished_field("relay", "audio", part)

        async def given_up() -> bool:
            return bool(await client.hexists(settings.keys.progress(part.room), fin))

        await wait_for(given_up, timeout=10)
        assert part in worker._finished_cache and part not in worker.owned


async def test_a_stream_of_a_session_removed_from_the_room_is_given_up(
        settings: BusSettings, client: Any) -> None:
    """A capture agent whose input failed before its first chunk removes its session again:
    a worker that took the session's stream meanwhile lets it go (it held it for ever), and
    the other sessions go on."""
    kept, removed = Partition("roomr", "s1"), Partition("roomr", "broken")
    reg = Registry(client, settings.keys, cluster=settings.redis_cluster)
    await reg.register_session(kept.room, kept.session, "en")
    await reg.register_session(removed.room, removed.session, "en")
    lease = settings.keys.lease("relay", "audio", removed)
    async with run_worker(RelayStage(), settings) as worker:
        async def both_owned() -> bool:
            return kept in worker.owned and removed in worker.owned

        await wait_for(both_owned)
        await reg.remove_session(removed.room, removed.session)

        async def let_go() -> bool:
            return removed not in worker.owned and not await client.exists(lease)

        await wait_for(let_go, timeout=10)
        await asyncio.sleep(3 * settings.discovery_ms / 1000)
        assert removed not in worker.owned  # not taken again
        await produce(client, settings.keys, kept, range(3), end=True)

        async def through() -> bool:
            return len(await outputs(client, settings.keys, kept)) == 4

        await wait_for(through)
