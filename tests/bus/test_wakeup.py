"""How a worker learns of new entries (bells, and the poll that catches entries added without
one) and how it bounds a handler that hangs (the watchdog). Plain Redis and a cluster."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from bus_helpers import dead_letters, outputs, register, wait_for

from bus.events import ControlEvent
from bus.keys import BELL_MAXLEN, Partition
from bus.producer import Publisher
from bus.runtime import Worker
from bus.settings import BusSettings
from bus.stage import Delivery, Emit, PartitionContext
from bus.testing import RelayStage, make_chunk, run_worker
from tests.timing import met_in_one_run_async


async def _relayed(client: Any, settings: BusSettings, part: Partition, n: int) -> bool:
    return len(await outputs(client, settings.keys, part)) >= n


async def _all_relayed(client: Any, settings: BusSettings, parts: list[Partition],
                       n: int) -> bool:
    return all([await _relayed(client, settings, p, n) for p in parts])


async def _time_to_output(client: Any, settings: BusSettings, part: Partition, n: int) -> float:
    t0 = time.monotonic()
    await wait_for(lambda: _relayed(client, settings, part, n), timeout=20, interval=0.005)
    return time.monotonic() - t0


async def test_a_rung_bell_wakes_the_worker_and_a_silent_write_waits_for_the_poll(
        settings: BusSettings, client: Any) -> None:
    # the poll is 1.5 s here: what is handled sooner was woken by its bell
    settings = settings.model_copy(update={"poll_ms": 1500})
    parts = [Partition("roomw", f"s{i}") for i in range(12)]
    await register(client, settings.keys, parts, settings.redis_cluster)
    publisher = Publisher(client, settings)
    async with run_worker(RelayStage(), settings):
        async def owned() -> bool:
            return all([await client.exists(settings.keys.lease("relay", "audio", p))
                        for p in parts])

        await wait_for(owned)
        await asyncio.sleep(2 * settings.poll_ms / 1000)  # the first reads and polls are over
        # through the publisher (a capture agent's path): the bell names the stream, and the
        # worker reads it well before its next poll. A wake-up needs the CPU, so it is met on
        # one of up to three streams, rung one after the other; were the bell not heard, each
        # would wait for a poll (about 1.3 s: each write follows the worker's last read, and
        # that read followed a poll)
        rung: list[Partition] = []

        async def ring() -> float:
            target = parts[7 + len(rung)]
            rung.append(target)
            sent = time.monotonic()
            await publisher.publish(settings.keys.stream("audio", target),
                                    make_chunk(target.room, target.session, 0))
            await _time_to_output(client, settings, target, 1)
            return round(time.monotonic() - sent, 3)

        await met_in_one_run_async(ring, lambda took: took < 0.5,
                                   "seconds for a rung bell to wake the worker (poll 1.5 s)")
        # by hand, without a bell (as with redis-cli): not lost, seen at the worker's next poll
        # and not sooner. Each write is made 0.2 s after the worker read the one before, which
        # only a poll does: the next poll is about 1.3 s away. The first write (whose poll is
        # anywhere) only sets that up. Met on one of up to three streams, as above
        quiet: list[Partition] = []
        poll_s = settings.poll_ms / 1000

        async def write_silently() -> float:
            await asyncio.sleep(0.2)
            target = parts[3 + len(quiet)]
            quiet.append(target)
            await client.xadd(settings.keys.stream("audio", target),
                              make_chunk(target.room, target.session, 0).to_fields())
            return round(await _time_to_output(client, settings, target, 1), 3)

        await write_silently()
        await met_in_one_run_async(write_silently,
                                   lambda took: poll_s / 3 < took <= poll_s + 0.5,
                                   f"seconds for a silent write to be read (poll {poll_s} s)")
        # the bell says which streams: the others were not read because of it
        bell = await client.xrange(settings.keys.bell("roomw", "audio"))
        assert [f[b"keys"].decode() for _id, f in bell] == [
            settings.keys.stream("audio", p) for p in rung]
    # the stage's own writes rang the output family's bell, naming the streams written
    out_bell = await client.xrange(settings.keys.bell("roomw", "relayed"))
    named = {k.decode() for _id, f in out_bell for k in f[b"keys"].split()}
    assert named == {settings.keys.stream("relayed", p) for p in rung + quiet}


_FLOOD = """
redis.call("XADD", KEYS[1], "*", unpack(ARGV, 2))
redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[1], "*", "keys", KEYS[1])
for i = 1, 2 * tonumber(ARGV[1]) do
  redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[1], "*", "keys", KEYS[3])
end
"""


async def test_a_reader_that_finds_its_bell_overflowed_reads_every_stream_of_it(
        settings: BusSettings, client: Any) -> None:
    # An entry is added and its bell rung, then so many other rings (naming a stream nobody
    # reads) that the bell is trimmed past the ring that named it before the worker's blocked
    # read is answered (a script: all of it happens at once). The worker cannot know what it
    # missed, so it reads every stream of that bell: the entry is handled at once, not at the
    # next poll (a minute here).
    settings = settings.model_copy(update={"poll_ms": 60_000})
    parts = [Partition("roomf", f"s{i}") for i in range(3)]
    await register(client, settings.keys, parts, settings.redis_cluster)
    async with run_worker(RelayStage(), settings):
        async def owned() -> bool:
            return all([await client.exists(settings.keys.lease("relay", "audio", p))
                        for p in parts])

        await wait_for(owned)
        await asyncio.sleep(0.5)  # the first reads are over: the worker waits on the bell
        target = parts[1]
        key = settings.keys.stream("audio", target)
        bell = settings.keys.bell(target.room, "audio")
        decoy = settings.keys.stream("audio", Partition("roomf", "nobody"))
        fields = make_chunk(target.room, target.session, 0).to_flat()
        await client.eval(_FLOOD, 3, key, bell, decoy, BELL_MAXLEN, *fields)
        rung = await client.xrange(bell)
        assert key.encode() not in {f[b"keys"] for _id, f in rung}  # trimmed: never seen
        assert await _time_to_output(client, settings, target, 1) < 5


class Hangs(RelayStage):
    """Hangs (far past the handler timeout) on the entries with these seqs, relays the rest."""

    def __init__(self, hang_seqs: set[int]) -> None:
        super().__init__()
        self.hang_seqs = hang_seqs
        self.cancelled = 0

    async def handle(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        event = delivery.event
        if event.seq in self.hang_seqs and not isinstance(event, ControlEvent):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return await super().handle(ctx, delivery)


async def test_a_handler_past_its_timeout_is_cancelled_retried_and_dead_lettered(
        settings: BusSettings, client: Any) -> None:
    settings = settings.model_copy(update={"handler_timeout_s": 0.4, "max_attempts": 2})
    part = Partition("roomt", "s1")
    await register(client, settings.keys, [part], settings.redis_cluster)
    stage = Hangs({2})
    publisher = Publisher(client, settings)
    t0 = time.monotonic()
    async with run_worker(stage, settings):
        await publisher.publish_many(settings.keys.stream("audio", part),
                                     [make_chunk(part.room, part.session, i) for i in range(5)])
        await wait_for(lambda: _relayed(client, settings, part, 4), timeout=20)
        took = time.monotonic() - t0
    got = await outputs(client, settings.keys, part)
    assert got == [("audio", i) for i in (0, 1, 3, 4)]  # in order; the others did not wait
    assert stage.cancelled == 2  # both attempts were cut off
    # two attempts of 0.4 s each (the watchdog looks every timeout/10) and a back-off
    assert took < 2 * 0.4 * 1.5 + 2.0, took
    (dead,) = await dead_letters(client, settings.keys, part.room)
    assert dead.attempts == 2 and dead.error.startswith("TimeoutError: the handler took more "
                                                        "than 0.4 s"), dead
    assert (await client.xpending(settings.keys.stream("audio", part), "relay"))["pending"] == 0


async def _each_out_once_in_order(client: Any, settings: BusSettings, parts: list[Partition],
                                  n: int) -> None:
    """Every one of the ``n`` entries of each stream relayed once, in order; nothing left
    pending and nothing dead-lettered."""
    for p in parts:
        assert await outputs(client, settings.keys, p) == [("audio", i) for i in range(n)], p
        info = await client.xpending(settings.keys.stream("audio", p), "relay")
        assert info["pending"] == 0, (p, info)
    for room in {p.room for p in parts}:
        assert await dead_letters(client, settings.keys, room) == []


class SlowCommits(Worker):
    """A worker whose commits take a while to come back (a Redis under load): what it handled
    before losing a stream is still queued or on its way when it takes the stream back."""

    async def _send_commit(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        await asyncio.sleep(0.05)
        return await super()._send_commit(calls)


async def test_streams_lost_and_taken_back_under_load_lose_and_repeat_nothing(
        settings: BusSettings, client: Any) -> None:
    """Leases vanish (as when renewals come late under load) again and again while the worker
    is busy; it takes the same streams back with the same id, so what it did before a loss
    must not be committed after it (the lease would let it pass): every entry comes out once,
    in order."""
    # (each loss delivers the pending entries once more: far more losses than a worker has,
    # so the attempts an entry gets before it counts as poison are raised out of the way)
    settings = settings.model_copy(update={"max_attempts": 100})
    parts = [Partition(f"rooml{i % 2}", f"s{i}") for i in range(8)]
    await register(client, settings.keys, parts, settings.redis_cluster)
    publisher = Publisher(client, settings)
    n = 600
    worker = SlowCommits(RelayStage(), settings)
    task = asyncio.create_task(worker.run())
    try:
        async def owned() -> bool:
            return all([await client.exists(settings.keys.lease("relay", "audio", p))
                        for p in parts])

        await wait_for(owned)
        for p in parts:
            await publisher.publish_many(settings.keys.stream("audio", p),
                                         [make_chunk(p.room, p.session, i) for i in range(n)])
        losses = 0

        async def take_leases() -> None:  # one lease away every 150 ms, round the streams
            nonlocal losses
            for i in itertools.count():
                p = parts[i % len(parts)]
                losses += int(await client.delete(settings.keys.lease("relay", "audio", p)))
                await asyncio.sleep(0.15)

        thief = asyncio.create_task(take_leases())
        try:
            await wait_for(lambda: _all_relayed(client, settings, parts, n), timeout=90)
        finally:
            thief.cancel()
        await asyncio.sleep(0.5)
        assert worker.owned  # it kept (took back) its streams
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)
    assert losses >= 3, losses
    await _each_out_once_in_order(client, settings, parts, n)


class LosesReadReplies(Worker):
    """A worker whose connection drops after Redis ran a read but before the reply came back
    (as when Redis shuts down, or a network link fails): every third read that took entries
    returns nothing to the worker. Those entries are pending under its consumer all the same."""

    lost = 0

    async def _read_fenced(self, keys: list[str], count: int, starts: list[str]) -> list[Any]:
        reply = await super()._read_fenced(keys, count, starts)
        if any(entries not in (b"LOST", "LOST") for _key, entries in reply):
            self.reads_with_entries = getattr(self, "reads_with_entries", 0) + 1
            if self.reads_with_entries % 3 == 1:
                self.lost += sum(len(e) for _k, e in reply if e not in (b"LOST", "LOST"))
                raise ConnectionError("connection lost before the reply (test)")
        return reply


async def test_entries_of_a_read_whose_reply_was_lost_are_handled_in_order(
        settings: BusSettings, client: Any) -> None:
    """The worker keeps its streams through such a fault, so nobody would ever claim the
    entries of the lost reply: it reads its own pending entries again and handles them, in
    order, before any newer one; nothing is left pending."""
    settings = settings.model_copy(update={"batch_count": 7})
    parts = [Partition("roomr", f"s{i}") for i in range(3)]
    await register(client, settings.keys, parts, settings.redis_cluster)
    publisher = Publisher(client, settings)
    n = 60
    worker = LosesReadReplies(RelayStage(), settings)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.started.wait(), timeout=10)
        for i in range(0, n, 5):  # in bursts, so that many reads take entries
            for p in parts:
                await publisher.publish_many(
                    settings.keys.stream("audio", p),
                    [make_chunk(p.room, p.session, s) for s in range(i, i + 5)])
            await asyncio.sleep(0.02)
        await wait_for(lambda: _all_relayed(client, settings, parts, n), timeout=30)
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)
    assert worker.lost >= 5, worker.lost
    await _each_out_once_in_order(client, settings, parts, n)


class HoldsReplies(Worker):
    """Holds the replies of its fenced reads and of its commits for a while, as a slow link
    would: a read can come back after its stream began to be given up."""

    hold_reads = 0.0
    hold_commits = 0.0

    async def _read_fenced(self, keys: list[str], count: int, starts: list[str]) -> list[Any]:
        reply = await super()._read_fenced(keys, count, starts)
        await asyncio.sleep(self.hold_reads)
        return reply

    async def _send_commit(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        result = await super()._send_commit(calls)
        await asyncio.sleep(self.hold_commits)
        return result


async def test_a_read_that_comes_back_while_its_stream_is_given_up_leaves_it_to_the_next(
        settings: BusSettings, client: Any) -> None:
    """A stream being shed waits for its commits before it lets the lease go. The entries of a
    read that comes back meanwhile were queued behind a task that no longer took any: the
    stream was held for ever, its lease renewed, its entries pending (found by the bench with
    two workers per stage). They now stay pending for the next owner, in order."""
    part = Partition("roomg", "s0")
    await register(client, settings.keys, [part], settings.redis_cluster)
    publisher = Publisher(client, settings)
    key = settings.keys.stream("audio", part)
    worker = HoldsReplies(RelayStage(), settings)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.started.wait(), timeout=10)
        await wait_for(lambda: _owned_and_ready(worker, part))
        worker.hold_reads, worker.hold_commits = 0.5, 1.0
        await publisher.publish_many(key, [make_chunk("roomg", "s0", s) for s in range(5)])
        # written (the commit's reply is held: the five are still in flight)
        await wait_for(lambda: _relayed(client, settings, part, 5), interval=0.01)
        await publisher.publish_many(key, [make_chunk("roomg", "s0", s) for s in range(5, 10)])
        await asyncio.sleep(0.15)  # read by Redis, the reply held
        owned = worker.owned[part]
        owned.closing = "shed"  # as discovery gives up a stream (another worker's share)
        owned.wake.set()
        await asyncio.sleep(1.5)
        worker.hold_reads = worker.hold_commits = 0.0
        # released, taken again by this worker (alone here), its pending entries read first
        await wait_for(lambda: _relayed(client, settings, part, 10), timeout=10)
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)
    await _each_out_once_in_order(client, settings, [part], 10)


async def _owned_and_ready(worker: Worker, part: Partition) -> bool:
    owned = worker.owned.get(part)
    return owned is not None and owned.ready
