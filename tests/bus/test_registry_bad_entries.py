"""Bad registry data written by hand (``redis-cli HSET``/``SADD``/``ZADD``) never stops
discovery: the registry skips each bad entry, logs it once (not at every 500 ms read) and
counts it in ``s2st_registry_bad_entries_total{kind}``; a worker goes on discovering and
processing the good sessions of the same room and of other rooms. As a last line of defence
a discovery round that raises something unexpected is logged with its traceback once and
counted, and the next round runs."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog
from bus_helpers import fast_settings, outputs, wait_for
from prometheus_client import REGISTRY

from bus.connection import connect
from bus.keys import BELL_MAXLEN, Keys, Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import RelayStage, end_marker, make_chunk, run_worker, scratch_client
from bus.text import as_text

BAD = "bad registry entry skipped"
GOOD = [Partition("ra", "s1", "es"), Partition("rb", "s2", "de")]
N = 3  # chunks per good stream

Writer = Callable[[Any, Keys, str], Awaitable[None]]  # (client, keys, id to use for "s9")


def _record(**kw: Any) -> str:
    return json.dumps({"source_lang": "en", "speaker": "", "started": time.time(), **kw})


def _session(field: Any, record: Any, status: Any = "active", alive: Any = None,
             room: str = "ra") -> Writer:
    """A session entry written by hand into ``room``'s sessions/status/alive hashes."""

    async def write(r: Any, keys: Keys, sid: str = "s9") -> None:
        name = sid if field == "s9" else field
        await r.hset(keys.sessions(room), name, record)
        await r.hset(keys.status(room), name, status)
        await r.hset(keys.alive(room), name, int(time.time() * 1000) if alive is None else alive)
    return write


def _room_member(member: Any) -> Writer:
    async def write(r: Any, keys: Keys, sid: str = "") -> None:
        await r.sadd(keys.rooms, member)
    return write


def _target(lang: Any, room: str = "ra") -> Writer:
    async def write(r: Any, keys: Keys, sid: str = "") -> None:
        await r.zadd(keys.targets(room), {lang: math.inf})
    return write


# (id, writer, kind, key of the entry (a Keys method and room, or "rooms"), field)
CASES: list[tuple[str, Writer, str, tuple[str, str | None], Any]] = [
    ("record-not-json", _session("s9", "{oops"), "record", ("sessions", "ra"), "s9"),
    ("record-a-list", _session("s9", "[1, 2]"), "record", ("sessions", "ra"), "s9"),
    ("record-null", _session("s9", "null"), "record", ("sessions", "ra"), "s9"),
    ("record-a-number", _session("s9", "42", room="rb"), "record", ("sessions", "rb"), "s9"),
    ("record-not-utf8", _session("s9", b"\xff{}"), "record", ("sessions", "ra"), "s9"),
    ("started-not-a-number", _session("s9", _record(started="yesterday")), "record",
     ("sessions", "ra"), "s9"),
    ("ended-a-list", _session("s9", _record(ended=[1])), "record", ("sessions", "ra"), "s9"),
    ("source-lang-bad", _session("s9", _record(source_lang="english!")), "record",
     ("sessions", "ra"), "s9"),
    ("speaker-not-text", _session("s9", _record(speaker=["x"])), "record",
     ("sessions", "ra"), "s9"),
    ("session-id-brace", _session("s{9}", _record()), "session_id", ("sessions", "ra"), "s{9}"),
    ("session-id-space", _session("s 9", _record()), "session_id", ("sessions", "ra"), "s 9"),
    ("session-id-not-utf8", _session(b"s\xff", _record()), "session_id", ("sessions", "ra"),
     b"s\xff"),
    ("status-unknown", _session("s9", _record(), status="paused"), "status", ("status", "ra"),
     "s9"),
    ("status-not-utf8", _session("s9", _record(), status=b"\xfe"), "status", ("status", "ra"),
     "s9"),
    ("alive-not-a-number", _session("s9", _record(), alive="soon"), "alive", ("alive", "ra"),
     "s9"),
    ("room-with-space", _room_member("bad room"), "room", ("rooms", None), None),
    ("room-with-brace", _room_member("r{x}"), "room", ("rooms", None), None),
    ("room-not-utf8", _room_member(b"r\xff"), "room", ("rooms", None), None),
    ("target-bad-code", _target("ES!"), "target", ("targets", "ra"), "ES!"),
    ("target-not-utf8", _target(b"e\xff", room="rb"), "target", ("targets", "rb"), b"e\xff"),
]


def _key(keys: Keys, where: tuple[str, str | None]) -> str:
    name, room = where
    return keys.rooms if room is None else str(getattr(keys, name)(room))


def _bad_count(kind: str) -> float:
    return REGISTRY.get_sample_value("s2st_registry_bad_entries_total", {"kind": kind}) or 0.0


def _kinds() -> dict[str, float]:
    return {k: _bad_count(k) for k in ("record", "session_id", "status", "alive", "room",
                                       "target")}


async def _good_rooms(client: Any, settings: BusSettings) -> None:
    """Rooms ra (target es) and rb (target de), each with one good active session."""
    reg = Registry(client, settings.keys, cluster=settings.redis_cluster)
    await reg.create_room("ra", ["es"])
    await reg.create_room("rb", ["de"])
    await reg.register_session("ra", "s1", "en")
    await reg.register_session("rb", "s2", "en")


async def _speak(client: Any, keys: Keys, part: Partition) -> None:
    """N chunks and the end marker into the session's translation stream (as MT would)."""
    key = keys.stream("translation", part)
    for seq in range(N):
        await client.xadd(key, make_chunk(part.room, part.session, seq).to_fields())
    await client.xadd(key, end_marker(part.room, part.session).to_fields())
    await client.xadd(keys.bell(part.room, "translation"), {"keys": key}, maxlen=BELL_MAXLEN,
                      approximate=True)


async def _relayed(client: Any, keys: Keys) -> bool:
    return all([len(await outputs(client, keys, p)) == N + 1 for p in GOOD])


def _relay() -> RelayStage:
    """A per-session-and-language stage: discovery reads sessions *and* target languages."""
    return RelayStage(input_family="translation", output_family="relayed", per_lang=True)


async def _discovers_past(client: Any, settings: BusSettings) -> list[dict[str, Any]]:
    """Run a worker over the registry as it is; it must relay both good sessions (room ra,
    where the bad entries are, and room rb), then keep going for a few discovery rounds.
    Returns the bad-entry log lines of this test's keys."""
    with structlog.testing.capture_logs() as logs:
        async with run_worker(_relay(), settings) as worker:
            for part in GOOD:
                await _speak(client, settings.keys, part)
            await wait_for(lambda: _relayed(client, settings.keys), timeout=8)
            rounds = 6 * settings.discovery_ms / 1000
            await asyncio.sleep(rounds)  # several more discovery rounds: still logged once
            assert worker._tasks[1].get_name() == "discovery"
            assert not worker._tasks[1].done()
    for part in GOOD:
        got = await outputs(client, settings.keys, part)
        assert got == [("audio", i) for i in range(N)] + [("control", 0)], part
    return [e for e in logs if e.get("event") == BAD
            and str(e.get("key", "")).startswith(settings.key_prefix + ":")]


@pytest.mark.parametrize(("case", "write", "kind", "where", "field"), CASES,
                         ids=[c[0] for c in CASES])
async def test_a_bad_registry_entry_is_skipped_logged_once_and_counted(
        local_redis: str, case: str, write: Writer, kind: str, where: tuple[str, str | None],
        field: Any) -> None:
    settings = fast_settings(local_redis)
    async with scratch_client(settings) as client:
        await _good_rooms(client, settings)
        await write(client, settings.keys, "s9")
        before = _bad_count(kind)
        bad = await _discovers_past(client, settings)
        assert len(bad) == 1, bad
        assert bad[0]["kind"] == kind
        assert bad[0]["key"] == _key(settings.keys, where)
        if field is not None:
            assert bad[0]["field"] == as_text(field, "backslashreplace")
        assert _bad_count(kind) == before + 1
        # every reader sees the good entries only
        reg = Registry(client, settings.keys)
        assert await reg.rooms() == ["ra", "rb"]
        assert await reg.room_targets("ra") == ["es"]
        assert await reg.room_targets("rb") == ["de"]
        assert [s.session for s in await reg.sessions("ra")] == ["s1"]
        assert [s.session for s in await reg.sessions("rb")] == ["s2"]
        snapshot = await reg.snapshot(["ra", "rb"])
        assert {room: ([*targets], [s.session for s in infos])
                for room, (targets, infos) in snapshot.items()} == {
            "ra": (["es"], ["s1"]), "rb": (["de"], ["s2"])}
        assert _bad_count(kind) == before + 1  # read again: not counted again


async def test_every_bad_entry_at_once_on_redis_and_cluster(settings: BusSettings,
                                                           client: Any) -> None:
    await _good_rooms(client, settings)
    # (one session id per case: they would overwrite each other)
    for i, (_case, write, _kind, _where, _field) in enumerate(CASES):
        await write(client, settings.keys, f"s9x{i}")
    before = _kinds()
    bad = await _discovers_past(client, settings)
    assert len(bad) == len(CASES), bad
    assert len({(e["key"], e["field"], e["value"]) for e in bad}) == len(CASES)
    after = _kinds()
    for kind in after:
        assert after[kind] - before[kind] == sum(1 for c in CASES if c[2] == kind), kind


async def test_readers_of_the_registry_skip_bad_entries(local_redis: str) -> None:
    """`s2st status` and `s2st sessions` (their collectors), the web server's room list, and
    a capture agent ending a session whose record was overwritten by hand."""
    from ops.status import collect
    from player_agent.web.app import _rooms

    settings = fast_settings(local_redis)
    async with scratch_client(settings) as client:
        keys = settings.keys
        await _good_rooms(client, settings)
        for i, (_case, write, _kind, _where, _field) in enumerate(CASES):
            await write(client, keys, f"s9x{i}")
        # a heartbeat written as a float is still a heartbeat
        await _session("s8", _record(), alive=f"{time.time() * 1000:.3f}")(client, keys, "s8")
        status = await collect(client, keys)
        assert [r["room"] for r in status["rooms"]] == ["ra", "rb"]
        assert [s["session"] for s in status["rooms"][0]["sessions"]] == ["s1", "s8"]
        assert all(s["status"] == "active" for s in status["rooms"][0]["sessions"])
        reg = Registry(client, keys)
        assert [(r["room"], r["targets"], r["active_sessions"]) for r in await _rooms(reg)] == [
            ("ra", ["es"], 2), ("rb", ["de"], 1)]
        # the capture agent ends s9 (whose record someone overwrote with a list): ended
        await client.hset(keys.sessions("ra"), "s9", "[1, 2]")
        await client.hset(keys.status("ra"), "s9", "active")
        await reg.end_session("ra", "s9", "stopped")
        s9 = await reg.session("ra", "s9")
        assert s9 is not None and s9.status == "ended" and s9.reason == "stopped"


def test_s2st_sessions_and_status_list_the_good_entries(
        local_redis: str, capsys: pytest.CaptureFixture[str]) -> None:
    from ops.cli import main as s2st_main

    settings = fast_settings(local_redis)

    async def setup() -> None:
        r = await connect(settings)
        await _good_rooms(r, settings)
        for i, (_case, write, _kind, _where, _field) in enumerate(CASES):
            await write(r, settings.keys, f"s9x{i}")
        await r.aclose()

    async def cleanup() -> None:
        async with scratch_client(settings):
            pass

    asyncio.run(setup())
    try:
        capsys.readouterr()
        assert s2st_main(["sessions", "--key-prefix", settings.key_prefix]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split("\t")[:3] for line in lines] == [["ra", "s1", "active"],
                                                            ["rb", "s2", "active"]]
        assert s2st_main(["status", "--key-prefix", settings.key_prefix, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert [r["room"] for r in status["rooms"]] == ["ra", "rb"]
        assert s2st_main(["room", "list", "--key-prefix", settings.key_prefix]) == 0
        assert capsys.readouterr().out.splitlines() == ["ra\ttargets=es", "rb\ttargets=de"]
    finally:
        asyncio.run(cleanup())


async def test_discovery_survives_an_unexpected_error_in_a_round(
        local_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not registry data: anything a round raises (a bug) is logged with its traceback once,
    counted, and the next round runs; the same for the retention sweep."""
    settings = fast_settings(local_redis, retention_s=0.8)
    errors: dict[str, int] = {"discovery": 0, "retention": 0}

    def _loop_errors(loop: str) -> float:
        return REGISTRY.get_sample_value("s2st_loop_errors_total",
                                         {"stage": "relay", "loop": loop}) or 0.0

    async with scratch_client(settings) as client:
        await _good_rooms(client, settings)
        before = {loop: _loop_errors(loop) for loop in errors}
        stage = _relay()
        with structlog.testing.capture_logs() as logs:
            async with run_worker(stage, settings) as worker:
                snapshot, sweep = worker.registry.snapshot, worker._sweeper.sweep

                async def broken_snapshot(*a: Any, **kw: Any) -> Any:
                    if errors["discovery"] < 3:
                        errors["discovery"] += 1
                        raise KeyError("a bug")
                    return await snapshot(*a, **kw)

                async def broken_sweep(*a: Any, **kw: Any) -> Any:
                    errors["retention"] += 1
                    if errors["retention"] <= 2:
                        raise ZeroDivisionError("another bug")
                    return await sweep(*a, **kw)

                monkeypatch.setattr(worker.registry, "snapshot", broken_snapshot)
                monkeypatch.setattr(worker._sweeper, "sweep", broken_sweep)
                await asyncio.sleep(3 * settings.discovery_ms / 1000)
                for part in GOOD:
                    await _speak(client, settings.keys, part)
                await wait_for(lambda: _relayed(client, settings.keys), timeout=8)
                await wait_for(_async(lambda: errors["retention"] > 3), timeout=8)
                tasks = {t.get_name(): t for t in worker._tasks}
                assert not tasks["discovery"].done() and not tasks["retention"].done()
        assert errors["discovery"] == 3
        failed = [e for e in logs if e.get("event") == "discovery round failed"]
        assert len(failed) == 1, failed  # the same error again: not logged again
        assert failed[0]["exc_info"] is True and "KeyError" in failed[0]["error"]
        swept = [e for e in logs if e.get("event") == "retention sweep failed"
                 and "another bug" in str(e.get("error"))]
        assert len(swept) == 1, swept
        assert _loop_errors("discovery") == before["discovery"] + 3
        assert _loop_errors("retention") == before["retention"] + 2


def _async(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()
    return check
