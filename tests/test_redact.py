"""The caption filter (workers/redact.py), the example stage of docs/writing-a-stage.md: the same
events through its handler in memory (bus.harness.run_stage) and through a real Worker on the
local Redis (run_on_redis) give the same captions; and `s2st redact` runs as a worker process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bus.events import ControlEvent, Transcript, Translation
from bus.harness import Entry, HarnessResult, fake_client, run_on_redis, run_stage
from bus.keys import Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import end_marker, scratch_client
from pipeline import PIPELINE, REDACT_PIPELINE
from workers.redact import RedactSettings, RedactStage, blocked_pattern, words_key

ROOT = Path(__file__).resolve().parents[1]
ROOM, SESSION, LANG = "r1", "s1", "es"
PART = Partition(ROOM, SESSION, LANG)
ROOM_WORDS = ("caramba", "coño", "earnings call")  # the room's set P:{room}:redact:words
Run = Callable[[RedactStage, list[Entry]], Awaitable[HarnessResult]]


def translation(seq: int, text: str, *, kind: str = "committed",
                source_text: str = "") -> Translation:
    t = 1000.0 + seq
    return Translation(room=ROOM, session=SESSION, seq=seq, capture_start=t, capture_end=t + 0.5,
                       kind=kind, utterance=0, src_seq=seq, src_lang="en", lang=LANG, text=text,
                       source_text=source_text)


def scratch_settings(url: str) -> BusSettings:
    return BusSettings(redis_url=url, key_prefix="t" + uuid.uuid4().hex[:10],
                       lease_ttl_ms=1200, heartbeat_ms=300, discovery_ms=150, block_ms=50,
                       retry_backoff_ms=10, log_level="warning")


@pytest.fixture(params=["memory", "redis"])
def on(request: pytest.FixtureRequest) -> Run:
    """Run a stage on events, with the room's word set in place: in memory or on Redis."""
    if request.param == "memory":
        async def in_memory(stage: RedactStage, events: list[Entry]) -> HarnessResult:
            settings, client = BusSettings(key_prefix="H"), fake_client()
            await client.sadd(words_key(settings.keys, ROOM), *ROOM_WORDS)
            return await run_stage(stage, events, lang=LANG, langs=[LANG], client=client,
                                   settings=settings, topology=REDACT_PIPELINE)
        return in_memory
    url = request.getfixturevalue("local_redis")  # tests/conftest.py

    async def on_redis(stage: RedactStage, events: list[Entry]) -> HarnessResult:
        settings = scratch_settings(url)
        async with scratch_client(settings) as client:  # deletes the prefix afterwards
            await client.sadd(words_key(settings.keys, ROOM), *ROOM_WORDS)
            return await run_on_redis(stage, events, settings, lang=LANG, langs=[LANG],
                                      topology=REDACT_PIPELINE)
    return on_redis


def stage(words: str = "darn") -> RedactStage:
    return RedactStage(RedactSettings(words=words))


# -- the stage, on both backends ------------------------------------------------------------


async def test_masks_the_blocked_words_and_forwards_the_end(on: Run) -> None:
    events: list[Entry] = [
        translation(1, "That DARN printer, ¡caramba!", source_text="that darn printer"),
        translation(2, "Él dijo coño. Darning socks: fine", kind="partial"),
        translation(2, "Él dijo Coño, y se fue; darning is fine"),
        translation(3, "The Earnings\u00a0 call starts; earnings are up"),
        translation(4, "Nada que ocultar: acción, corazón"),
        end_marker(ROOM, SESSION, seq=5),
    ]
    result = await on(stage(), events)
    *data, end = result.stream("captions", LANG)
    captions = [e for e in data if isinstance(e, Translation)]
    assert len(captions) == len(data)
    assert [e.text for e in captions] == [
        "That **** printer, ¡****!",
        "Él dijo ****. Darning socks: fine",  # whole words only; accents kept
        "Él dijo ****, y se fue; darning is fine",
        "The **** starts; earnings are up",  # a phrase, whatever the spaces between its words
        "Nada que ocultar: acción, corazón",  # untouched
    ]
    assert captions[0].source_text == "that **** printer"
    assert [(e.seq, e.kind) for e in captions] == [
        (1, "committed"), (2, "partial"), (2, "committed"), (3, "committed"), (4, "committed")]
    first = captions[0]
    assert (first.lang, first.src_lang, first.capture_start) == (LANG, "en", 1001.0)
    assert [h.stage for h in first.trace] == ["redact"]
    assert isinstance(end, ControlEvent) and end.action == "end" and end.seq == 5
    assert result.finished and not result.dead
    assert set(result.emits) == {result.keys.stream("captions", result.partition)}


async def test_rejects_what_is_not_a_translation(on: Run) -> None:
    wrong = Transcript(room=ROOM, session=SESSION, seq=1, capture_start=1.0, capture_end=1.5,
                       kind="committed", utterance=0, text="darn", lang="en",
                       sample_start=0, sample_end=8000)
    result = await on(stage(), [wrong, translation(2, "darn it"), end_marker(ROOM, SESSION, 3)])
    assert [(d.stage, d.error, d.attempts) for d in result.dead] == [
        ("redact", "rejected: the redact stage reads translations, not 'transcript' events", 1)]
    assert [getattr(e, "text", None) for e in result.stream("captions", LANG)] == ["**** it", None]


# -- the pieces ---------------------------------------------------------------------------------


def test_no_words_no_pattern_and_the_longest_phrase_first() -> None:
    assert blocked_pattern(["", " , "]) is None
    pattern = blocked_pattern(["darn", "darn it", "a.b"])
    assert pattern is not None
    assert pattern.sub("#", "Darn it! darn, a.b axb") == "#! #, # axb"  # escaped, not a regex


def test_the_example_topology_extends_the_pipeline() -> None:
    assert REDACT_PIPELINE.input_of("redact").name == "translation"
    assert [f.name for f in REDACT_PIPELINE.writes("redact")] == ["captions"]
    assert "redact" not in PIPELINE.stages  # the deployed pipeline does not run it
    with pytest.raises(ValueError, match="may not write stream family 'speech'"):
        REDACT_PIPELINE.check_write("redact", "speech")


# -- the command --------------------------------------------------------------------------------


def s2st(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([str(ROOT / ".venv/bin/s2st"), *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]


def test_flags_win_over_variables_and_a_bad_value_exits_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from bus.command import settings_from_args
    from ops.cli import build_parser

    monkeypatch.setenv("S2ST_REDACT_WORDS", "heck")
    monkeypatch.setenv("S2ST_REDACT_MASK", "#")
    args = build_parser().parse_args(["redact", "--words", "darn,drat"])
    settings = settings_from_args(RedactSettings, args)
    assert (settings.words, settings.mask) == ("darn,drat", "#")
    with pytest.raises(SystemExit) as exited:
        settings_from_args(RedactSettings, build_parser().parse_args(
            ["redact", "--refresh-s", "0"]), program="s2st redact")
    assert exited.value.code == 2
    assert "--refresh-s / S2ST_REDACT_REFRESH_S" in capsys.readouterr().err


def test_help() -> None:
    out, _ = s2st("redact", "--help").communicate(timeout=60)
    assert "S2ST_REDACT_WORDS" in out and "P:{room}:redact:words" in out


async def test_the_worker_process_masks_a_session_and_stops_on_sigterm(local_redis: str) -> None:
    settings = scratch_settings(local_redis)
    keys = settings.keys
    env = {**os.environ, "S2ST_REDIS_URL": local_redis, "S2ST_KEY_PREFIX": settings.key_prefix,
           "S2ST_DISCOVERY_MS": "150", "S2ST_BLOCK_MS": "50", "S2ST_LOG_LEVEL": "warning"}
    async with scratch_client(settings) as client:
        registry = Registry(client, keys)
        await registry.create_room(ROOM, [LANG])
        await client.sadd(words_key(keys, ROOM), "caramba")
        proc = s2st("redact", "--words", "darn", env=env)
        try:
            await registry.register_session(ROOM, SESSION, "en")
            source = keys.stream("translation", PART)
            for event in (translation(1, "darn, ¡caramba!"), end_marker(ROOM, SESSION, 2)):
                await client.xadd(source, event.to_fields())
            bell = keys.bell_of(source)
            assert bell is not None
            await client.xadd(bell, {"keys": source})
            out_key = keys.stream("captions", PART)
            deadline = time.monotonic() + 30
            while len(await client.xrange(out_key)) < 2:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "no captions within 30 s"
                await asyncio.sleep(0.1)
            [(_id, fields), _end] = await client.xrange(out_key)
            assert fields[b"text"].decode() == "****, ¡****!"
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
