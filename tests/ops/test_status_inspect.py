"""`s2st status` and `s2st inspect` on a session produced by publishing its events."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bus.connection import connect
from bus.events import DeadLetter, Speech, Transcript, Translation
from bus.keys import Keys, Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import end_marker, hop, make_chunk
from ops.cli import main as s2st_main
from ops.session_view import hop_parts, inspect_session
from ops.status import collect, format_status

ROOM, SESSION = "hall", "alice"


async def publish_session(client: Any, keys: Keys, t0: float) -> None:
    """A room, a finished session with every kind of event, groups, a lease, workers."""
    reg = Registry(client, keys)
    await reg.create_room(ROOM, ["es"])
    await reg.register_session(ROOM, SESSION, "en", "Alice")
    part = Partition(ROOM, SESSION)
    audio = keys.stream("audio", part)
    for seq in range(4):
        await client.xadd(audio, make_chunk(ROOM, SESSION, seq, samples=8000,
                                             capture_start=t0 + seq * 0.5).to_fields())
    await client.xadd(audio, end_marker(ROOM, SESSION, 4).to_fields())
    await client.xgroup_create(audio, "asr", id="0")
    await client.xreadgroup("asr", "w-asr", {audio: ">"}, count=2)  # 2 pending, 3 not read
    end = t0 + 2.0
    asr = hop("asr", end + 0.2, end + 0.7)
    mt = hop("mt", end + 0.75, end + 0.8)
    tts = hop("tts", end + 0.9, end + 1.4)
    common: dict[str, Any] = dict(room=ROOM, session=SESSION, capture_start=t0, capture_end=end)
    await client.xadd(keys.stream("transcript", part), Transcript(
        **common, seq=0, kind="partial", utterance=0, text="good mor", lang="en",
        sample_start=0, sample_end=16000, emitted=end + 0.3, trace=[asr]).to_fields())
    await client.xadd(keys.stream("transcript", part), Transcript(
        **common, seq=1, kind="committed", utterance=0, text="Good morning everyone.",
        lang="en", sample_start=0, sample_end=32000, emitted=end + 0.7, trace=[asr]).to_fields())
    await client.xadd(keys.stream("translation", Partition(ROOM, SESSION, "es")), Translation(
        **common, seq=0, kind="committed", utterance=0, src_seq=1, src_lang="en", lang="es",
        text="Buenos días a todos.", source_text="Good morning everyone.", route="apertium",
        emitted=end + 0.8, trace=[asr, mt]).to_fields())
    for part_no, text in enumerate(["Buenos días", "a todos."]):
        await client.xadd(keys.room_stream("speech", ROOM, "es"), Speech(
            **common, seq=0, part=part_no, last=part_no == 1, lang="es", src_seq=1, text=text,
            rate=24000, samples=2400, duration=0.1, backend="espeak", pcm=bytes(4800),
            emitted=end + 1.5, trace=[asr, mt, tts]).to_fields())
    await client.set(keys.lease("asr", "audio", part), "w-asr", px=3000)
    await client.zadd(keys.workers("asr"), {"w-asr": time.time(), "w-old": time.time() - 600})
    await client.zadd(keys.workers("tts"), {"w-tts": time.time()})
    await client.hset(keys.health("tts"), mapping={  # what a worker not as configured reports
        "w-tts": json.dumps({"unavailable": {"kokoro": "no model file"}, "skipped": {"de": 3}}),
        "w-long-gone": json.dumps({"unavailable": {"piper": "stale"}})})
    await client.xadd(keys.deadletter(ROOM), DeadLetter(
        stage="mt", worker="w-mt", stream="x", entry_id="1-0", error="boom", attempts=3,
        failed_at=time.time(), session=SESSION).to_fields())
    await reg.end_session(ROOM, SESSION)


@pytest.fixture
async def published(prefix: str, local_url: str) -> tuple[Any, Keys, float]:
    settings = BusSettings(redis_url=local_url, key_prefix=prefix)
    client = await connect(settings)
    t0 = time.time() - 10
    await publish_session(client, settings.keys, t0)
    yield client, settings.keys, t0
    await client.aclose()


async def test_status_collects_everything(published: tuple[Any, Keys, float]) -> None:
    client, keys, _t0 = published
    status = await collect(client, keys)
    assert [w["id"] for w in status["workers"]["asr"] if w["alive"]] == ["w-asr"]
    assert {w["id"]: w["alive"] for w in status["workers"]["asr"]} == {"w-asr": True,
                                                                        "w-old": False}
    [room] = status["rooms"]
    assert room["room"] == ROOM and room["dead_letters"] == 1
    assert room["targets"] == [{"lang": "es", "pinned": True, "left_s": None}]
    [session] = room["sessions"]
    assert (session["session"], session["status"], session["speaker"],
            session["source_lang"]) == (SESSION, "ended", "Alice", "en")
    assert room["leases"][0]["lease"] == f"asr:audio:{SESSION}"
    assert room["leases"][0]["owner"] == "w-asr" and 0 < room["leases"][0]["ttl_ms"] <= 3000
    streams = {s["stream"]: s for s in room["streams"]}
    assert set(streams) == {f"audio:{SESSION}", f"transcript:{SESSION}",
                            f"translation:{SESSION}:es", "speech:es", "deadletter"}
    assert streams[f"audio:{SESSION}"]["length"] == 5
    [group] = streams[f"audio:{SESSION}"]["groups"]
    assert (group["group"], group["pending"], group["lag"], group["consumers"]) == ("asr", 2, 3, 1)

    assert status["workers"]["tts"] == [
        {"id": "w-tts", "age_s": status["workers"]["tts"][0]["age_s"], "alive": True,
         "health": {"unavailable": {"kokoro": "no model file"}, "skipped": {"de": 3}}}]
    assert status["workers"]["asr"][0]["health"] == {}

    text = format_status(status)
    assert "asr    1 live: w-asr" in text and "(1 gone)" in text
    assert "    ! w-tts cannot load kokoro: no model file\n    ! w-tts spans skipped de: 3" in text
    assert "stale" not in text and "! w-asr" not in text
    assert f"ROOM {ROOM}   targets: es (pinned)   dead letters: 1" in text
    assert "sessions: 0 active, 1 ended" in text and "speaker=Alice" in text
    assert f"asr:audio:{SESSION}" in text
    line = next(x for x in text.splitlines() if f"audio:{SESSION}" in x and "asr" in x
                and "lease" not in x and "w-asr" not in x)
    assert line.split()[-5:] == ["5", "asr", "3", "2", "1"]


def test_status_command_json(published: tuple[Any, Keys, float], prefix: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert s2st_main(["status", "--key-prefix", prefix, "--json", "--room", ROOM]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["room"] for r in data["rooms"]] == [ROOM]
    assert data["redis"].startswith("redis://")
    assert s2st_main(["status", "--key-prefix", prefix]) == 0
    assert f"ROOM {ROOM}" in capsys.readouterr().out


async def test_inspect_shows_text_seq_and_latency(published: tuple[Any, Keys, float]) -> None:
    client, keys, _t0 = published
    text = await inspect_session(client, keys, ROOM, SESSION, [], 10)
    assert f"SESSION {ROOM}/{SESSION}  ended  lang=en  speaker=Alice" in text
    assert "AUDIO" in text and "2.0 s of session audio, 1 utterance(s)" in text
    assert "end marker: yes" in text and "group asr: lag 3, pending 2" in text
    assert "Good morning everyone." in text and "good mor" not in text  # committed only
    assert "Buenos días a todos." in text and "<- Good morning everyone.  [apertium]" in text
    assert "seq 0.0" in text and "seq 0.1" in text and "espeak" in text
    # the speech pieces: written 1.5 s after the words ended, split by the trace's hops
    assert "+ 1.50 s" in text
    assert ("capture->asr 0.20  asr 0.50  asr->mt 0.05  mt 0.05  mt->tts 0.10  tts 0.50  "
            "tts->written 0.10") in text
    assert "latency p50/max (s): total 1.50/1.50" in text


async def test_inspect_limits_to_count_and_other_sessions(
        published: tuple[Any, Keys, float]) -> None:
    client, keys, t0 = published
    other = Speech(room=ROOM, session="bob", seq=0, part=0, last=True, lang="es", src_seq=0,
                   text="De Bob.", rate=24000, samples=0, duration=0.0, capture_start=t0,
                   capture_end=t0, emitted=t0 + 1)
    await client.xadd(keys.room_stream("speech", ROOM, "es"), other.to_fields())
    text = await inspect_session(client, keys, ROOM, SESSION, ["es"], 1)
    assert "De Bob." not in text
    assert "seq 0.1" in text and "seq 0.0" not in text  # only the last piece
    assert "(3 entries, last 1 shown)" in text


def test_hop_parts_add_up_to_the_latency() -> None:
    t = 1000.0
    ev = Speech(room=ROOM, session=SESSION, seq=0, part=0, last=True, lang="es", src_seq=0,
                text="x", rate=24000, samples=0, duration=0.0, capture_start=t - 1,
                capture_end=t, emitted=t + 2.0, trace=[hop("asr", t + 0.1, t + 0.5),
                                                       hop("tts", t + 1.0, t + 1.9)])
    parts = hop_parts(ev)
    assert [name for name, _ in parts] == ["capture->asr", "asr", "asr->tts", "tts",
                                           "tts->written"]
    assert sum(v for _, v in parts) == pytest.approx(2.0)
