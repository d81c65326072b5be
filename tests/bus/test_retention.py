"""Bounded memory: an ended session's streams and records go one retention window after its
end (bus/retention.py), on a plain Redis and on a cluster; a live session is untouched."""

from __future__ import annotations

from typing import Any

from bus_helpers import outputs, produce, register, wait_for

from bus.keys import Partition
from bus.registry import Registry
from bus.retention import ProgressField
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


def test_progress_fields_are_parsed_by_position_not_by_pattern() -> None:
    assert ProgressField.parse("wm|mt|transcript:es") == ProgressField(
        "wm|mt|transcript:es", "wm", "mt", "es")
    fin = ProgressField.parse("fin|tts|translation:alice:es")
    assert fin is not None and (fin.session, fin.lang) == ("alice", "es")
    out = ProgressField.parse("out|asr|transcript:alice|alice")
    assert out is not None and (out.kind, out.stage, out.session) == ("out", "asr", "alice")
    assert ProgressField.parse("garbage") is None
    assert ProgressField.parse("wm|x|nocolon") is None
