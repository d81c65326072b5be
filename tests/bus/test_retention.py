"""Bounded memory: an ended session's streams and records go one retention window after its
end (bus/retention.py), on a plain Redis and on a cluster; a live session is untouched."""

from __future__ import annotations

from typing import Any

from bus_helpers import outputs, produce, register, wait_for

from bus.keys import Partition
from bus.registry import Registry
from bus.retention import ProgressField, RetentionSweeper, ended_at
from bus.settings import BusSettings
from bus.testing import RelayStage, run_worker

KEEP_S = 1.0


async def _fields(client: Any, settings: BusSettings, room: str, session: str) -> list[str]:
    names = [k.decode() if isinstance(k, bytes) else k
             for k in await client.hkeys(settings.keys.progress(room))]
    return sorted(n for n in names
                  if (f := ProgressField.parse(n)) is not None and f.session == session)


async def test_an_ended_session_is_swept_one_window_after_its_end(
        settings: BusSettings, client: Any) -> None:
    keys = settings.keys
    old, live = Partition("roomr", "old"), Partition("roomr", "live")
    await register(client, keys, [old, live], settings.redis_cluster)
    reg = Registry(client, keys, cluster=settings.redis_cluster)
    short = settings.model_copy(update={"retention_s": KEEP_S})
    downstream = RelayStage("relay2", input_family="relayed", output_family="relayed2")
    async with run_worker(RelayStage(), short), run_worker(downstream, short.model_copy(
            update={"worker_id": settings.worker_id + "-2"})):
        await produce(client, keys, old, range(3), end=True)
        await produce(client, keys, live, range(3))

        async def relayed() -> bool:
            return (len(await outputs(client, keys, old, "relayed2")) == 4
                    and len(await outputs(client, keys, live, "relayed2")) == 3)

        await wait_for(relayed)
        await reg.end_session(old.room, old.session, "stopped")
        assert await client.exists(keys.stream("audio", old), keys.stream("relayed", old)) == 2
        assert "wm|relay|audio:old" in await _fields(client, settings, old.room, "old")

        async def swept() -> bool:
            return not await client.exists(keys.stream("audio", old), keys.stream("relayed", old))

        await wait_for(swept, timeout=10)
        # each stage deleted its input and its bookkeeping, and marked the stream finished
        assert "wm|relay|audio:old" not in await _fields(client, settings, old.room, "old")
        assert await client.hexists(keys.progress(old.room), "fin|relay|audio:old")

        async def forgotten() -> bool:
            return not await client.hexists(keys.sessions(old.room), old.session)

        await wait_for(forgotten, timeout=10)
        assert not await client.hexists(keys.status(old.room), old.session)
        assert not await client.hexists(keys.alive(old.room), old.session)
        assert await _fields(client, settings, old.room, "old") == []
        # nothing came back, and the live session kept everything
        assert not await client.exists(keys.stream("audio", old), keys.stream("relayed", old))
        assert await client.xlen(keys.stream("audio", live)) == 3
        assert len(await outputs(client, keys, live, "relayed2")) == 3
        assert "wm|relay|audio:live" in await _fields(client, settings, live.room, "live")
        assert [s.session for s in await reg.sessions(live.room)] == ["live"]
    # a stream no stage reads (the last relay's output here) is only trimmed as written
    assert len(await outputs(client, keys, old, "relayed2")) == 4


async def test_a_sweep_that_read_the_registry_before_another_forgot_the_session_writes_nothing(
        settings: BusSettings, client: Any) -> None:
    """Two stages sweep the same room; one forgets an expired session while the other still
    holds a registry read from before: the late one must not mark its stream finished again
    (that field would belong to no session any more, and stay for ever)."""
    keys = settings.keys
    part = Partition("roomf", "gone")
    await register(client, keys, [part], settings.redis_cluster)
    reg = Registry(client, keys, cluster=settings.redis_cluster)
    await produce(client, keys, part, range(2))
    await client.hset(keys.progress(part.room), mapping={
        "wm|relay|audio:gone": "1-0", "wm|relay2|relayed:gone": "1-0"})
    await client.xadd(keys.stream("relayed", part), {"x": "1"})
    await reg.end_session(part.room, part.session, "stopped")

    def sweeper(stage: str, family: str) -> RetentionSweeper:
        return RetentionSweeper(client, keys, stage=stage, family=family, per_lang=False,
                                retention_s=KEEP_S)

    stale = await reg.sessions(part.room)  # the late sweeper's read
    (info,) = stale
    end = ended_at(info)
    swept, forgotten = await sweeper("relay", "audio").sweep(
        part.room, stale, [], set(), now=end + 3 * KEEP_S)
    assert swept == {part} and forgotten == {"gone"}
    assert await _fields(client, settings, part.room, "gone") == []
    assert not await client.exists(keys.stream("audio", part))
    # the late one: one window after the end, from its stale read (it would not forget yet)
    swept, forgotten = await sweeper("relay2", "relayed").sweep(
        part.room, stale, [], set(), now=end + 1.5 * KEEP_S)
    assert swept == set() and forgotten == {"gone"}
    assert await _fields(client, settings, part.room, "gone") == []
    assert not await client.hexists(keys.sessions(part.room), "gone")
    assert await client.exists(keys.stream("relayed", part))  # (its sweep did not run)


def test_progress_fields_are_parsed_by_position_not_by_pattern() -> None:
    assert ProgressField.parse("wm|mt|transcript:es") == ProgressField(
        "wm|mt|transcript:es", "wm", "mt", "es")
    fin = ProgressField.parse("fin|tts|translation:alice:es")
    assert fin is not None and (fin.session, fin.lang) == ("alice", "es")
    out = ProgressField.parse("out|asr|transcript:alice|alice")
    assert out is not None and (out.kind, out.stage, out.session) == ("out", "asr", "alice")
    assert ProgressField.parse("garbage") is None
    assert ProgressField.parse("wm|x|nocolon") is None
