"""`s2st export` and `s2st replay`: on a session made by publishing its events, and (slow) a
session spoken through the real workers and replayed through them again."""

from __future__ import annotations

import asyncio
import json
import re
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ops_helpers import base_env

from bus.connection import connect
from bus.events import AudioChunk, ControlEvent, Speech, Transcript, Translation
from bus.keys import Keys, Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import hop
from ops.cli import main as s2st_main
from ops.replay import Point, Replay, ReplayError, ReplayPlan, committed_texts, wait_done
from ops.session_read import read_all
from tests.timing import met_in_one_run_async

ROOM, SESSION = "hall", "alice"
CHUNK = 8000  # 0.5 s at 16 kHz
OFFSETS = [0, 8000, 16000, 32000, 40000]  # nothing sent for 24000..32000: a gap


def pcm(value: int, samples: int) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


async def publish(client: Any, keys: Keys, t0: float) -> None:
    """A finished session: audio with a gap, transcripts, a translation, speech pieces."""
    reg = Registry(client, keys)
    await reg.create_room(ROOM, ["es"])
    await reg.register_session(ROOM, SESSION, "en", "Alice")
    part = Partition(ROOM, SESSION)
    audio = keys.stream("audio", part)
    for seq, off in enumerate(OFFSETS):
        await client.xadd(audio, AudioChunk(
            room=ROOM, session=SESSION, seq=seq, capture_start=t0 + off / 16000,
            capture_end=t0 + (off + CHUNK) / 16000, utterance=0 if seq < 2 else 1, offset=off,
            samples=CHUNK, rate=16000, speech_prob=0.9, vad="speech", utt_start=seq in (0, 2),
            utt_end=seq in (1, 4), pcm=pcm(1000 * (seq + 1), CHUNK),
            emitted=t0 + (off + CHUNK) / 16000 + 0.01).to_fields())
    await client.xadd(audio, ControlEvent.end_of(ROOM, SESSION, at=t0 + 3, seq=5,
                                                 emitted=t0 + 3).to_fields())
    await client.xgroup_create(audio, "asr", id="0")
    transcript = keys.stream("transcript", part)
    texts = [(0, "partial", "good mor", 0, 8000), (0, "committed", "Good morning.", 0, 16000),
             (1, "committed", "Welcome, <all> & you -->.", 16000, 48000)]
    for seq, kind, text, start, end in texts:
        cs, ce = t0 + start / 16000, t0 + end / 16000
        await client.xadd(transcript, Transcript(
            room=ROOM, session=SESSION, seq=seq, kind=kind, utterance=seq, text=text, lang="en",
            sample_start=start, sample_end=end, capture_start=cs, capture_end=ce,
            emitted=ce + 0.5, trace=[hop("asr", ce + 0.1, ce + 0.5)]).to_fields())
    translation = keys.stream("translation", Partition(ROOM, SESSION, "es"))
    for seq, text, start, end in [(1, "Buenos días.", 0, 16000), (3, "Bienvenidos.", 16000, 48000)]:
        cs, ce = t0 + start / 16000, t0 + end / 16000
        await client.xadd(translation, Translation(
            room=ROOM, session=SESSION, seq=seq, kind="committed", utterance=seq // 2,
            src_seq=seq // 2, src_lang="en", lang="es", text=text, source_text="x",
            route="apertium", sample_start=start, sample_end=end, capture_start=cs,
            capture_end=ce, emitted=ce + 0.6,
            trace=[hop("asr", ce + 0.1, ce + 0.5), hop("mt", ce + 0.55, ce + 0.6)]).to_fields())
    speech = keys.room_stream("speech", ROOM, "es")
    pieces = [(1, 0, 0.0, 7), (1, 1, 0.2, 8), (1, 1, 0.2, 8), (3, 0, 2.0, 9)]  # a redelivery
    for seq, part_no, at, value in pieces:
        await client.xadd(speech, Speech(
            room=ROOM, session=SESSION, seq=seq, part=part_no, last=part_no == 1 or seq == 3,
            lang="es", src_seq=seq // 2, text=f"p{seq}.{part_no}", rate=24000, samples=12000,
            duration=0.5, pcm=pcm(value, 12000), capture_start=t0 + at, capture_end=t0 + at + 1,
            emitted=t0 + at + 2, trace=[hop("tts", t0 + at + 1.5, t0 + at + 1.9)]).to_fields())
    await client.xadd(speech, Speech(
        room=ROOM, session="bob", seq=0, part=0, last=True, lang="es", src_seq=0, text="bob",
        rate=24000, samples=100, duration=0.0, pcm=pcm(5, 100), capture_start=t0,
        capture_end=t0).to_fields())
    await reg.end_session(ROOM, SESSION)


@pytest.fixture
async def session(prefix: str, local_url: str) -> Any:
    settings = BusSettings(redis_url=local_url, key_prefix=prefix)
    client = await connect(settings)
    t0 = time.time() - 60
    await publish(client, settings.keys, t0)
    yield client, settings, t0
    await client.aclose()


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()


SRT_CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+)\n")


def srt_cues(text: str) -> list[tuple[str, str, str]]:
    blocks = text.strip("\n").split("\n\n")
    out = []
    for i, block in enumerate(blocks, 1):
        m = SRT_CUE.fullmatch(block + "\n")
        assert m and int(m.group(1)) == i, block
        out.append((m.group(2), m.group(3), m.group(4)))
    return out


# -- export -------------------------------------------------------------------------------


async def test_export_writes_every_file(session: Any, tmp_path: Path, prefix: str) -> None:
    _client, _settings, t0 = session
    out = tmp_path / "export"
    code = await asyncio.to_thread(s2st_main, ["export", "--room", ROOM, "--session", SESSION,
                                               "--out", str(out), "--key-prefix", prefix])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "captions.en.srt", "captions.en.vtt", "captions.es.srt", "captions.es.vtt",
        "events.json", "source.wav", "speech.es.wav"]

    # source.wav: each chunk at its offset, silence in the gap
    src, rate = read_wav(out / "source.wav")
    assert rate == 16000 and len(src) == 48000
    for seq, off in enumerate(OFFSETS):
        assert (src[off:off + CHUNK] == 1000 * (seq + 1)).all()
    assert (src[24000:32000] == 0).all()

    # captions, timed by the samples they cover; committed only; escaped for WebVTT
    assert srt_cues((out / "captions.en.srt").read_text()) == [
        ("00:00:00,000", "00:00:01,000", "Good morning."),
        ("00:00:01,000", "00:00:03,000", "Welcome, <all> & you -->.")]
    assert srt_cues((out / "captions.es.srt").read_text()) == [
        ("00:00:00,000", "00:00:01,000", "Buenos días."),
        ("00:00:01,000", "00:00:03,000", "Bienvenidos.")]
    vtt = (out / "captions.en.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    assert re.findall(r"(\d\d:\d\d:\d\d\.\d\d\d) --> (\d\d:\d\d:\d\d\.\d\d\d)\n(.+)", vtt) == [
        ("00:00:00.000", "00:00:01.000", "Good morning."),
        ("00:00:01.000", "00:00:03.000", "Welcome, &lt;all&gt; &amp; you --&gt;.")]

    # speech: in (seq, part) order, once each, at its capture offset, never overlapping
    sp, rate = read_wav(out / "speech.es.wav")
    assert rate == 24000 and len(sp) == 48000 + 12000
    assert (sp[:12000] == 7).all()  # p1.0 at 0.0 s
    assert (sp[12000:24000] == 8).all()  # p1.1 wanted 0.2 s: after p1.0 (no overlap)
    assert (sp[24000:48000] == 0).all()
    assert (sp[48000:] == 9).all()  # p3.0 at 2.0 s; bob's piece is not there

    doc = json.loads((out / "events.json").read_text())
    assert doc["session"] == SESSION and doc["record"]["speaker"] == "Alice"
    assert doc["languages"] == {"source": "en", "targets": ["es"]}
    streams = doc["streams"]
    assert set(streams) == {f"audio:{SESSION}", f"transcript:{SESSION}",
                            f"translation:{SESSION}:es", "speech:es"}
    assert [e["seq"] for e in streams[f"audio:{SESSION}"]] == [0, 1, 2, 3, 4, 5]
    assert all("pcm" not in e for rows in streams.values() for e in rows)
    assert [e["text"] for e in streams[f"transcript:{SESSION}"]] == [
        "good mor", "Good morning.", "Welcome, <all> & you -->."]
    assert len(streams["speech:es"]) == 4 and {e["session"] for e in streams["speech:es"]} == {
        SESSION}
    tr = streams[f"translation:{SESSION}:es"][0]
    assert tr["latency"]["total"] == pytest.approx(0.6, abs=1e-3)
    assert tr["latency"]["hops"] == pytest.approx(
        {"capture->asr": 0.1, "asr": 0.4, "asr->mt": 0.05, "mt": 0.05, "mt->written": 0.0},
        abs=1e-3)
    assert tr["trace"][1]["stage"] == "mt" and tr["capture_end"] == pytest.approx(t0 + 1)
    assert streams[f"audio:{SESSION}"][-1]["latency"] is None  # the end marker
    assert doc["latency"]["speech:es"]["count"] == 4
    assert doc["latency"]["speech:es"]["max"] == pytest.approx(1.0, abs=1e-3)


async def test_export_bad_input(session: Any, tmp_path: Path, prefix: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    run = ["--out", str(tmp_path / "x"), "--key-prefix", prefix]
    assert await asyncio.to_thread(s2st_main, ["export", "--room", ROOM, "--session", "nobody",
                                               *run]) == 2
    assert "unknown session 'nobody'" in capsys.readouterr().err
    assert await asyncio.to_thread(s2st_main, ["export", "--room", ROOM, "--session", "a:b",
                                               *run]) == 2
    assert "invalid session id" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert await asyncio.to_thread(s2st_main, ["export", "--room", ROOM, "--session", SESSION,
                                               "--out", str(tmp_path / "file"),
                                               "--key-prefix", prefix]) == 2
    assert "is not a folder" in capsys.readouterr().err


# -- replay without workers -----------------------------------------------------------------


async def snapshot(client: Any, keys: Keys, room: str, session: str) -> dict[str, Any]:
    """Every key of the session (DUMP: entries, groups, pending lists) and its registry and
    progress fields, and its entries of the room's speech streams."""
    part = Partition(room, session)
    out: dict[str, Any] = {}
    pattern = keys.stream("audio", part).replace(f"audio:{session}", "*")
    async for raw in client.scan_iter(match=pattern, count=500):
        key = raw.decode()
        local = keys.local_part(key)
        if local.split(":")[1:2] == [session]:
            out[key] = await client.dump(key)
        elif local.startswith("speech:"):
            out[key] = [(i, f) for i, f in await client.xrange(key)
                        if f.get(b"session") == session.encode()]
    for hkey in (keys.sessions(room), keys.status(room), keys.alive(room)):
        out[hkey] = await client.hget(hkey, session)
    progress = await client.hgetall(keys.progress(room))
    out["progress"] = {k: v for k, v in progress.items() if _of_session(k.decode(), session)}
    return out


def _of_session(field: str, session: str) -> bool:
    """wm|stage|family:session[:lang], fin|..., out|stage|stream|session."""
    parts = field.split("|")
    if parts[0] == "out":
        return parts[-1] == session
    return parts[-1].split(":")[1:2] == [session]


async def test_replay_copies_the_audio_into_a_new_session(session: Any) -> None:
    client, settings, _t0 = session
    keys = settings.keys
    before = await snapshot(client, keys, ROOM, SESSION)
    assert len(before) >= 7
    started = time.time()
    result = await Replay(client, settings).run(ReplayPlan(ROOM, SESSION, pace="fast"))
    assert (result.room, result.session) == (ROOM, f"{SESSION}-replay-1")
    rows = await read_all(client, keys.stream("audio", Partition(ROOM, result.session)))
    chunks = [r.event for r in rows[:-1]]
    originals = [r.event for r in await read_all(client, keys.stream("audio",
                                                                     Partition(ROOM, SESSION)))]
    assert all(isinstance(c, AudioChunk) for c in chunks) and len(chunks) == 5
    assert [c.seq for c in chunks] == [0, 1, 2, 3, 4]
    assert [(c.offset, c.utterance, c.utt_start, c.utt_end, c.pcm) for c in chunks] == [
        (o.offset, o.utterance, o.utt_start, o.utt_end, o.pcm) for o in originals[:5]]
    assert chunks[0].capture_start == pytest.approx(started, abs=1.0)  # shifted to now
    assert chunks[3].capture_start - chunks[0].capture_start == pytest.approx(2.0)
    assert isinstance(rows[-1].event, ControlEvent) and rows[-1].event.action == "end"
    assert rows[-1].event.seq == 5
    info = await Registry(client, keys).session(ROOM, result.session)
    assert info is not None and (info.status, info.source_lang, info.speaker) == (
        "ended", "en", "Alice")
    record = json.loads(await client.hget(keys.sessions(ROOM), result.session))
    assert record["replay_of"] == f"{ROOM}/{SESSION}"
    # a range (seconds into the session), at real-time pace, into another room (created with
    # the original room's targets)
    plan = ReplayPlan(ROOM, SESSION, to_room="lab", start=Point(seconds=0.6),
                      end=Point(seconds=2.1), pace="realtime")
    replays = []

    async def paced() -> float:
        t = time.monotonic()
        replays.append(await Replay(client, settings).run(plan))
        took = time.monotonic() - t
        # chunks 1..3 (0.5..2.5 s): written as each one's last sample would be captured: it
        # takes 2 s, never less (in every run) ...
        assert took > 2.0 - 0.05, took
        return round(took, 3)

    # ... and not much more: a busy host can hold a replay up, so in one of up to three
    await met_in_one_run_async(paced, lambda took: took < 2.0 + 0.4,
                               "seconds to replay 2 s of audio at real-time pace")
    result = replays[-1]
    assert result.room == "lab" and result.session == f"{SESSION}-replay-{len(replays)}"
    assert await Registry(client, keys).room_targets("lab") == ["es"]
    rows = await read_all(client, keys.stream("audio", Partition("lab", result.session)))
    assert [(r.event.seq, getattr(r.event, "offset", None)) for r in rows] == [
        (0, 8000), (1, 16000), (2, 32000), (3, None)]
    assert await snapshot(client, keys, ROOM, SESSION) == before


async def test_replay_of_one_stage(session: Any) -> None:
    client, settings, _t0 = session
    keys = settings.keys
    before = await snapshot(client, keys, ROOM, SESSION)
    transcripts = await read_all(client, keys.stream("transcript", Partition(ROOM, SESSION)))
    plan = ReplayPlan(ROOM, SESSION, new_session="again", stage="mt",
                      start=Point.parse(transcripts[1].id, "--from-entry"), pace="fast")
    result = await Replay(client, settings).run(plan)
    new = Partition(ROOM, "again")
    rows = await read_all(client, keys.stream("transcript", new))
    assert [(r.event.seq, getattr(r.event, "text", None)) for r in rows] == [
        (0, "Good morning."), (1, "Welcome, <all> & you -->."), (2, None)]
    assert rows[0].event.capture_end - rows[0].event.trace[0].t_in == pytest.approx(-0.1)
    assert not await client.exists(keys.stream("audio", new))
    # the asr stage is finished for it: no worker waits for its audio
    assert await client.hget(keys.progress(ROOM), keys.finished_field("asr", "audio", new))
    # tts: its translations, the stages before marked finished
    result = await Replay(client, settings).run(ReplayPlan(ROOM, SESSION, stage="tts",
                                                           pace="fast"))
    new = Partition(ROOM, result.session)
    rows = await read_all(client, keys.stream("translation", Partition(ROOM, result.session,
                                                                       "es")))
    assert [getattr(r.event, "text", None) for r in rows] == ["Buenos días.", "Bienvenidos.",
                                                              None]
    assert await client.hget(keys.progress(ROOM), keys.finished_field("mt", "transcript", new))
    assert await snapshot(client, keys, ROOM, SESSION) == before


async def test_replay_bad_input(session: Any, prefix: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    client, settings, _t0 = session

    def run(*args: str) -> tuple[int, str]:
        code = s2st_main(["replay", "--room", ROOM, "--key-prefix", prefix, "--pace", "fast",
                          *args])
        return code, capsys.readouterr().err

    cases = [
        (["--session", "nobody"], "unknown session 'nobody' in room 'hall'"),
        (["--session", "a b"], "invalid session id"),
        (["--session", SESSION, "--from", "3", "--to", "1"], "the range is empty"),
        (["--session", SESSION, "--from", "20", "--to", "30"], "nothing to replay"),
        (["--session", SESSION, "--from-entry", "x1"], "neither seconds"),
        (["--session", SESSION, "--from-entry", "12.5"], "is not an entry id"),
        (["--session", SESSION, "--as", SESSION], "cannot write into the original"),
        (["--session", SESSION, "--to-room", "lab", "--as", "x", "--from", "1-0", "--to", "0-5"],
         "the range is empty"),
    ]
    for args, message in cases:
        code, err = await asyncio.to_thread(run, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    await Replay(client, settings).run(ReplayPlan(ROOM, SESSION, new_session="taken",
                                                  pace="fast"))
    code, err = await asyncio.to_thread(run, "--session", SESSION, "--as", "taken")
    assert code == 2 and "'taken' already exists" in err
    code, err = await asyncio.to_thread(run, "--session", SESSION, "--wait", "0.5")
    assert code == 1 and "did not finish within" in err  # no workers here
    assert "no end marker yet in" in err and ":transcript:" in err, err  # says where it waits
    with pytest.raises(ReplayError, match="no translation streams"):
        await Replay(client, settings).run(ReplayPlan(ROOM, "taken", stage="tts"))


# -- with the real workers ---------------------------------------------------------------------


@pytest.mark.slow
def test_replay_through_the_workers_gives_the_same_captions(
        tmp_path: Path, prefix: str, local_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from ops.demo import default_sample
    from ops.stack import Stack, s2st_argv
    from ops.stackconfig import load_config
    from ops.supervisor import Supervisor

    room, original = "demo", "talk"
    env = base_env(S2ST_REDIS_URL=local_url, S2ST_KEY_PREFIX=prefix, S2ST_LOG_LEVEL="warning",
                   S2ST_TTS_BACKENDS="*=espeak", S2ST_ASR_THREADS="1")
    settings = BusSettings(redis_url=local_url, key_prefix=prefix)
    sup = Supervisor()
    stack = Stack(config=load_config(None).with_room(room, ["es"]), settings=settings,
                  supervisor=sup, state_dir=tmp_path / "state", base_env=env)
    try:
        stack.start()
        assert stack.wait_ready(120), "the workers did not start"
        capture = sup.start("capture", s2st_argv(
            "capture", "--room", room, "--session", original, "--lang", "en", "--speaker", "demo",
            "--file", str(default_sample()), "--fast", "--no-meter"), stack.env(), tier=2,
            service=False)
        assert sup.wait_child(capture, 60) == 0

        async def until_done(session: str) -> bool:
            client = await connect(settings)
            try:
                return await wait_done(client, settings.keys, room, session, "asr", 90)
            finally:
                await client.aclose()

        assert asyncio.run(until_done(original)), "the original session was not translated"
        before = asyncio.run(_snapshot(settings, room, original))
        code = s2st_main(["replay", "--room", room, "--session", original, "--pace", "fast",
                          "--wait", "240", "--key-prefix", prefix])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "transcript" in out and "speech:es" in out and "different" not in out, out
        replayed = f"{original}-replay-1"
        texts = asyncio.run(_captions(settings, room, [original, replayed]))
        assert texts[original]["en"] and texts[original]["es"], texts
        assert "welcome" in " ".join(texts[original]["en"]).lower()
        assert texts[replayed] == texts[original]
        assert asyncio.run(_snapshot(settings, room, original)) == before
        assert {settings.keys.local_part(k) for k in before if ":{" in k} >= {
            f"audio:{original}", f"transcript:{original}", f"translation:{original}:es"}
        assert before["progress"], "the workers' progress fields of the original are compared"

        # the replay exported: its captions are the committed texts, its audio the sample's
        out_dir = tmp_path / "export"
        assert s2st_main(["export", "--room", room, "--session", replayed, "--out",
                          str(out_dir), "--key-prefix", prefix]) == 0
        for lang in ("en", "es"):
            cues = srt_cues((out_dir / f"captions.{lang}.srt").read_text())
            assert [c[2] for c in cues] == texts[replayed][lang]
            assert all(a < b for a, b, _ in cues)
        src, rate = read_wav(out_dir / "source.wav")
        assert 8.0 <= len(src) / rate <= 12.0
        assert "tts" in (out_dir / "events.json").read_text()

        # re-run the mt stage (and tts after it) from the transcripts; then tts alone
        for stage, new in (("mt", "talk-mt"), ("tts", "talk-tts")):
            assert s2st_main(["replay", "--room", room, "--session", original, "--stage", stage,
                              "--as", new, "--pace", "fast", "--wait", "60",
                              "--key-prefix", prefix]) == 0, capsys.readouterr()
            out = capsys.readouterr().out
            assert "speech:es" in out and "different" not in out, out
        rerun = asyncio.run(_captions(settings, room, ["talk-mt", "talk-tts"]))
        assert rerun["talk-mt"] == {"en": texts[original]["en"], "es": texts[original]["es"]}
        assert rerun["talk-tts"] == {"en": [], "es": texts[original]["es"]}
        spoken = asyncio.run(_spoken(settings, room, [original, "talk-mt", "talk-tts"]))
        assert spoken["talk-mt"] == spoken["talk-tts"] == spoken[original] != []
        assert asyncio.run(_snapshot(settings, room, original)) == before
    finally:
        codes = sup.stop()
        sup.kill_all()
    assert all(c == 0 for c in codes.values()), codes


async def _snapshot(settings: BusSettings, room: str, session: str) -> dict[str, Any]:
    client = await connect(settings)
    try:
        return await snapshot(client, settings.keys, room, session)
    finally:
        await client.aclose()


async def _spoken(settings: BusSettings, room: str, sessions: list[str]) -> dict[str, list[str]]:
    """The texts of each session's Spanish speech pieces, in (seq, part) order."""
    client = await connect(settings)
    try:
        rows = await read_all(client, settings.keys.room_stream("speech", room, "es"))
    finally:
        await client.aclose()
    pieces = sorted({(r.event.session, r.event.seq, r.event.part, r.event.text) for r in rows
                     if isinstance(r.event, Speech)})
    return {s: [p[3] for p in pieces if p[0] == s] for s in sessions}


async def _captions(settings: BusSettings, room: str,
                    sessions: list[str]) -> dict[str, dict[str, list[str]]]:
    client = await connect(settings)
    keys = settings.keys
    try:
        return {s: {"en": await committed_texts(client, keys.stream("transcript",
                                                                      Partition(room, s))),
                    "es": await committed_texts(client, keys.stream(
                        "translation", Partition(room, s, "es")))} for s in sessions}
    finally:
        await client.aclose()

