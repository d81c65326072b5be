"""bus.harness: a stage's handler run in memory gives what the real Worker on real Redis gives.

The contract tests run one body on both backends (``on``: "memory" is :func:`run_stage`,
"redis" the same events through :class:`bus.runtime.Worker` on the local Redis) and compare
the emits and dead letters; the others are the harness's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from bus_helpers import fast_settings

from bus.events import AudioChunk, ControlEvent, DeadLetter, Event, Transcript
from bus.harness import Entry, HarnessError, HarnessResult, NoRedis, run_on_redis, run_stage
from bus.keys import Partition
from bus.stage import Delivery, Emit, PartitionContext, Reject, Stage
from bus.testing import RelayStage, end_marker, make_chunk

ROOM, SESSION = "r1", "s1"
PART = Partition(ROOM, SESSION)
Run = Callable[[Stage, list[Entry]], Awaitable[HarnessResult]]


class PickyRelay(RelayStage):
    """A relay that rejects seq 3 (input that can never succeed)."""

    async def handle(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        if delivery.event.seq == 3 and not delivery.is_end:
            raise Reject("seq 3 is not wanted")
        return await super().handle(ctx, delivery)


@pytest.fixture(params=["memory", "redis"])
def on(request: pytest.FixtureRequest) -> Run:
    if request.param == "memory":
        return lambda stage, entries: run_stage(stage, entries, worker_id="w-contract")
    settings = fast_settings(request.getfixturevalue("local_redis"))
    return lambda stage, entries: run_on_redis(stage, entries, settings)


def _plain(event: Event) -> dict[str, Any]:
    """An event without what differs between two runs (write and hop times)."""
    data = event.model_dump(exclude={"emitted", "trace"})
    data["trace"] = [(h.stage, h.worker) for h in event.trace]
    return data


def _dead(letters: list[DeadLetter]) -> list[tuple[str, str, int, str]]:
    """Dead letters without ids and key names: (stage, error, attempts, original seq)."""
    return [(d.stage, d.error, d.attempts, d.original.get("seq", b"").decode()) for d in letters]


# -- contract: the same body on both backends ---------------------------------------------


async def test_contract_emits_dead_letters_and_end(on: Run) -> None:
    t = 1000.0
    chunks = [make_chunk(ROOM, SESSION, seq, capture_start=t + seq) for seq in range(6)]
    stranger = make_chunk(ROOM, "other", 9, capture_start=t)  # another session's entry
    entries: list[Entry] = [chunks[0], chunks[1], chunks[1], chunks[2], stranger, chunks[3],
                            {"type": "audio", "seq": "x"}, chunks[4], chunks[5],
                            end_marker(ROOM, SESSION, seq=6)]
    result = await on(PickyRelay(fail_seqs={2}), entries)

    relayed = result.stream("relayed")
    assert [(e.type, e.seq) for e in relayed] == [
        ("audio", 0), ("audio", 1), ("audio", 4), ("audio", 5), ("control", 0)]
    assert relayed[0].trace[-1].stage == "relay" and result.finished
    plain = {"emitted", "trace"}
    assert [e.model_dump(exclude=plain) for e in relayed[:4]] == [
        c.model_dump(exclude=plain) for c in (chunks[0], chunks[1], chunks[4], chunks[5])]
    dead = _dead(result.dead)
    assert [d[1].split(":")[0] for d in dead] == ["PoisonError", "malformed", "rejected",
                                                  "malformed"]
    assert dead[0] == ("relay", "PoisonError: seq 2 is poison", 3, "2")
    assert dead[2] == ("relay", "rejected: seq 3 is not wanted", 1, "3")
    assert "not to stream" in dead[1][1]


async def test_contract_the_two_backends_agree(local_redis: str) -> None:
    """Field for field (but times and ids), memory and Redis give the same result."""
    entries: list[Entry] = [*(make_chunk(ROOM, SESSION, s, capture_start=500.0 + s)
                              for s in (0, 2, 2, 1, 3, 4)), end_marker(ROOM, SESSION, seq=5)]
    memory = await run_stage(PickyRelay(fail_seqs={4}), entries, worker_id="w-same")
    real = await run_on_redis(PickyRelay(fail_seqs={4}), entries, fast_settings(local_redis))
    mem_out, real_out = memory.stream("relayed"), real.stream("relayed")
    for events in (mem_out, real_out):  # the workers' ids differ: compare the rest
        for e in events:
            e.trace = [h.model_copy(update={"worker": "w"}) for h in e.trace]
    assert [_plain(e) for e in mem_out] == [_plain(e) for e in real_out]
    assert [(e.type, e.seq) for e in mem_out] == [("audio", 0), ("audio", 2), ("control", 0)]
    assert memory.duplicates == 2  # 2 again, and 1: not above the last one written
    assert _dead(memory.dead) == _dead(real.dead)


# -- the harness's own ------------------------------------------------------------------------


async def test_entries_after_the_end_are_dead_lettered_late() -> None:
    result = await run_stage(RelayStage(), [end_marker(ROOM, SESSION, seq=0),
                                            make_chunk(ROOM, SESSION, 1)])
    assert [e.type for e in result.stream("relayed")] == ["control"]
    assert [(d.error, d.attempts) for d in result.dead] == [("after the end of its stream", 0)]


class EchoLast(Stage):
    """Publishes each chunk early, then returns a copy saying (in its offset) how many of
    its outputs it read back before."""

    name, input_family = "echo", "audio"

    def __init__(self) -> None:
        self.more_pending: list[bool] = []

    async def handle(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        out = ctx.stream("echoed")
        seen = len(await ctx.read(out))
        last = await ctx.last(out)
        self.more_pending.append(ctx.more_pending)
        event = delivery.event
        await ctx.publish([Emit(out, event)])
        copy = event.model_copy(update={"seq": event.seq + 100,
                                        "offset": 10 * seen + (last is not None)})
        return [Emit(out, copy, dedup=False)]

    async def on_tick(self, ctx: PartitionContext, now: float) -> list[Emit]:
        return [Emit(ctx.stream("echoed"), end_marker(ROOM, SESSION, seq=999), dedup=False)]


async def test_publish_read_back_more_pending_and_ticks() -> None:
    chunks = [make_chunk(ROOM, SESSION, s) for s in range(3)]
    stage = EchoLast()
    result = await run_stage(stage, chunks, ticks=1)
    out = result.stream("echoed")
    assert [e.seq for e in out] == [0, 100, 1, 101, 2, 102, 999]
    # each handler call read back what the earlier calls wrote
    assert [e.offset for e in out[1:6:2] if isinstance(e, AudioChunk)] == [0, 21, 41]
    assert stage.more_pending == [True, True, False]


async def test_without_a_redis_a_raw_reading_stage_is_told_clearly() -> None:
    class Raw(RelayStage):
        async def on_acquire(self, ctx: PartitionContext) -> None:
            await ctx.redis.xrevrange(ctx.input_key, "+", "-", count=1)

    with pytest.raises(HarnessError, match=r"ctx\.redis\.xrevrange"):
        await run_stage(Raw(), [make_chunk(ROOM, SESSION, 0)], client=NoRedis())


class Thin(Stage):
    """A stage in the thin shape: it declares what it reads and where the end marker goes,
    and handles only data events; it also reads its input back, newest first, at the end."""

    name, input_family = "thin", "audio"
    accepts = (AudioChunk,)
    wrong_input = "a thin stage reads audio chunks, not {type!r} events"

    def __init__(self) -> None:
        self.read_back: list[list[str]] = []

    def end_outputs(self, ctx: PartitionContext) -> list[str]:
        return [ctx.stream("copied"), ctx.stream("copied", "es")]

    async def on_event(self, ctx: PartitionContext, event: Event,
                       delivery: Delivery) -> list[Emit]:
        return [Emit(ctx.stream("copied"), ctx.derive(type(event), event, t_in=delivery.t_in,
                                                      **event.model_dump(exclude=_BASE)))]

    async def on_end(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        self.read_back = [
            [i for i, _e in await ctx.read(ctx.input_key)][::-1],
            [i for i, _e in await ctx.read_reverse(ctx.input_key)],
            [i async for i, _e in ctx.newest_first(ctx.input_key, batch=2)],
        ]
        return await super().on_end(ctx, delivery)


_BASE = {"room", "session", "capture_start", "capture_end", "trace", "emitted"}


async def test_a_thin_stage_gets_data_events_and_forwards_the_end_marker() -> None:
    t = make_chunk(ROOM, SESSION, 0).capture_start
    start = ControlEvent(room=ROOM, session=SESSION, seq=0, capture_start=t, capture_end=t,
                         action="start")
    text = Transcript(room=ROOM, session=SESSION, seq=2, capture_start=t, capture_end=t,
                      kind="committed", utterance=0, text="hi", lang="en", sample_start=0,
                      sample_end=0)
    stage = Thin()
    result = await run_stage(stage, [make_chunk(ROOM, SESSION, 0), start, make_chunk(
        ROOM, SESSION, 1), text, end_marker(ROOM, SESSION, seq=7)])
    assert [(e.type, e.seq) for e in result.stream("copied")] == [
        ("audio", 0), ("audio", 1), ("control", 7)]
    assert [(e.type, e.seq) for e in result.stream("copied", "es")] == [("control", 7)]
    assert [(d.error, d.attempts) for d in result.dead] == [
        ("rejected: a thin stage reads audio chunks, not 'transcript' events", 1)]
    newest_first, reverse, paged = stage.read_back
    assert len(newest_first) == 5 and reverse == newest_first and paged == newest_first
