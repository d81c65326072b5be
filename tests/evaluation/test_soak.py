"""`s2st bench soak`: its accounting on hand-made streams, and the real command, short.

The accounting tests build streams entry by entry (pure lists, and real events written to the
local Redis) with one defect each and check that the report finds exactly that defect. The
command tests run `s2st bench soak` as a subprocess for two minutes with a fault of each kind,
and check its JSON, its plot and that it left no process behind; and stop one with SIGINT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis.asyncio as aioredis

from bus.events import AudioChunk, ControlEvent, DeadLetter, Hop, Speech, Transcript, Translation
from bus.keys import Keys, Partition
from ops.soak.accounting import (
    Rec,
    check_session,
    dead_reason,
    fenced_writes,
    foreign_intervals,
    latency_windows,
    order_check,
    parse_entry,
    seq_gaps,
    word_diff,
)
from ops.soak.collect import StreamTail, read_stream
from ops.soak.schedule import FaultSpec, cycle, parse_duration, parse_faults

ROOT = Path(__file__).resolve().parents[2]

# -- pure accounting ---------------------------------------------------------------------------

_ids = iter(range(1, 10**9))


def _id() -> str:
    return f"{1_700_000_000_000 + next(_ids)}-0"


def audio(*seqs: int, end: bool = True) -> list[Rec]:
    out = [Rec(_id(), "audio", "s", s) for s in seqs]
    return out + ([Rec(_id(), "control", "s", len(seqs), action="end")] if end else [])


def transcripts(*texts: str, partials: bool = True) -> list[Rec]:
    out = []
    for seq, text in enumerate(texts):
        if partials:  # a partial carries the seq of the next commit: not a duplicate
            out.append(Rec(_id(), "transcript", "s", seq, kind="partial", text=text[:3]))
        out.append(Rec(_id(), "transcript", "s", seq, kind="committed", text=text))
    return [*out, Rec(_id(), "control", "s", len(texts), action="end")]


def translation(seq: int, first: int, last: int, source: str, text: str) -> Rec:
    return Rec(_id(), "translation", "s", seq, kind="committed", src_seq_first=first,
               src_seq=last, source_text=source, text=text)


def pieces(seq: int, *texts: str, capture_end: float = 100.0, emitted: float = 101.5,
           last: bool = True) -> list[Rec]:
    return [Rec(_id(), "speech", "s", seq, part=i, text=t, last=last and i == len(texts) - 1,
                capture_end=capture_end, emitted=emitted + i) for i, t in enumerate(texts)]


END = Rec("1800000000000-0", "control", "s", 99, action="end")


def clean() -> tuple[list[Rec], list[Rec], list[Rec], list[Rec]]:
    """Three transcripts, two translations (the second spans two transcripts), spoken."""
    a = audio(0, 1, 2, 3)
    t = transcripts("Hello there.", "How are", "you today?")
    tr = [translation(1, 0, 0, "Hello there.", "Hola."),
          translation(5, 1, 2, "How are you today?", "¿Cómo estás hoy?"), END]
    sp = [*pieces(1, "Hola."), *pieces(5, "¿Cómo estás", "hoy?"), END]
    return a, t, tr, sp


def test_a_clean_session_has_nothing_lost_duplicated_or_out_of_order() -> None:
    a, t, tr, sp = clean()
    c = check_session(a, t, {"es": tr}, {"es": sp})
    assert (c.lost, c.duplicated, c.out_of_order, c.text_errors) == (0, 0, 0, 0)
    es = c.langs["es"]
    assert (c.audio_chunks, c.transcripts, es.translations, es.spoken, es.pieces) == (4, 3, 2, 2, 3)
    assert c.audio_ended and c.transcript_ended and es.translation_ended and es.speech_ended
    assert es.latencies == [(100.0, 1.5), (100.0, 1.5)]


def test_gaps_in_audio_and_transcripts_are_lost() -> None:
    _a, t, tr, sp = clean()
    c = check_session(audio(0, 1, 3), t, {"es": tr}, {"es": sp})
    assert c.audio_gaps == [2] and c.lost == 1
    t2 = [r for r in t if not (r.seq == 1 and r.committed)]
    c = check_session(audio(0, 1), t2, {"es": tr}, {"es": sp})
    assert c.transcript_gaps == [1]
    assert c.lost == 1  # (the translation spanning it still exists: one loss, not two)


def test_a_transcript_no_translation_covers_is_lost_and_its_words_missing() -> None:
    a, t, _tr, sp = clean()
    tr = [translation(1, 0, 0, "Hello there.", "Hola."), END]
    c = check_session(a, t, {"es": tr}, {"es": sp[:1]})
    es = c.langs["es"]
    assert es.untranslated == [1, 2] and c.lost == 2
    assert es.missing_words == 4 and es.extra_words == 0  # "how are you today"


def test_a_translation_without_speech_or_with_pieces_missing_is_lost() -> None:
    a, t, tr, _sp = clean()
    c = check_session(a, t, {"es": tr}, {"es": [*pieces(5, "¿Cómo estás", "hoy?"), END]})
    assert c.langs["es"].unspoken == [1] and c.lost == 1
    # part 1 of 3 missing; then a segment whose last piece never came
    gap = [*pieces(1, "Hola."), *[p for p in pieces(5, "¿Cómo", "estás", "hoy?")
                                  if p.part != 1]]
    c = check_session(a, t, {"es": tr}, {"es": gap})
    assert c.langs["es"].incomplete == [5] and c.lost == 1
    open_end = [*pieces(1, "Hola."), *pieces(5, "¿Cómo estás", "hoy?", last=False)]
    assert check_session(a, t, {"es": tr}, {"es": open_end}).langs["es"].incomplete == [5]


def test_what_a_stage_dead_lettered_is_not_counted_lost() -> None:
    a, t, tr, _sp = clean()
    c = check_session(a, t, {"es": tr}, {"es": pieces(5, "¿Cómo estás", "hoy?")},
                      dead={"translation:es": {1}})
    assert c.lost == 0 and c.langs["es"].dead_lettered == ["translation 1"]


def test_the_same_key_written_twice_is_duplicated() -> None:
    a, t, tr, sp = clean()
    c = check_session([*a[:2], Rec(_id(), "audio", "s", 1), *a[2:]], t, {"es": tr}, {"es": sp})
    assert c.audio_duplicated == [1] and c.duplicated == 1 and c.out_of_order == 0
    t2 = [*t[:-1], Rec(_id(), "transcript", "s", 2, kind="committed", text="you today?"), t[-1]]
    c = check_session(a, t2, {"es": tr}, {"es": sp})
    assert c.transcript_duplicated == [2] and c.duplicated == 1
    tr2 = [tr[0], tr[1], translation(5, 1, 2, "How are you today?", "¿Cómo estás hoy?"), END]
    c = check_session(a, t, {"es": tr2}, {"es": sp})
    assert c.langs["es"].duplicated_translations == [5] and c.duplicated == 1
    sp2 = [*sp[:2], *pieces(5, "¿Cómo estás"), *sp[2:]]
    c = check_session(a, t, {"es": tr}, {"es": sp2})
    assert c.langs["es"].duplicated_pieces == [(5, 0)] and c.duplicated == 1
    assert c.lost == 0 and c.out_of_order == 0


def test_text_translated_twice_under_another_seq_shows_as_extra_words() -> None:
    a, t, tr, sp = clean()
    again = translation(3, 1, 1, "How are", "¿Cómo están")
    c = check_session(a, t, {"es": [tr[0], again, tr[1], END]},
                      {"es": [*sp[:1], *pieces(3, "¿Cómo están"), *sp[1:]]})
    es = c.langs["es"]
    assert es.extra_words == 2 and es.missing_words == 0 and c.text_errors == 2
    assert c.duplicated == 0 and c.lost == 0


def test_a_key_below_an_earlier_one_is_out_of_order() -> None:
    a, t, tr, sp = clean()
    c = check_session([a[1], a[0], *a[2:]], t, {"es": tr}, {"es": sp})
    assert c.audio_out_of_order == 1 and c.duplicated == 0 and c.lost == 0
    swapped = [sp[1], sp[2], sp[0], sp[3]]  # segment 5 spoken before segment 1
    c = check_session(a, t, {"es": tr}, {"es": swapped})
    assert c.langs["es"].out_of_order_pieces == 1 and c.out_of_order == 1
    c = check_session(a, t, {"es": [tr[1], tr[0], END]}, {"es": sp})
    assert c.langs["es"].out_of_order_translations == 1


def test_speech_that_does_not_say_its_translation_is_a_text_error() -> None:
    a, t, tr, _sp = clean()
    c = check_session(a, t, {"es": tr}, {"es": [*pieces(1, "Adiós."),
                                                *pieces(5, "¿Cómo estás", "hoy?")]})
    assert c.langs["es"].speech_text_mismatch == [1] and c.text_errors == 1


def test_order_gaps_and_word_diff_helpers() -> None:
    assert order_check([0, 1, 1, 3, 2, 4]) == ([1], 1)
    assert order_check([(0, 0), (0, 1), (1, 0), (0, 1)]) == ([(0, 1)], 0)
    assert seq_gaps([0, 2, 5]) == [1, 3, 4] and seq_gaps([]) == []
    assert word_diff("a b c d".split(), "a c d d".split()) == (1, 1)


def test_latency_windows_bucket_by_when_the_source_words_ended() -> None:
    t0 = 1000.0
    points = [(t0 + 10, 1.0), (t0 + 20, 3.0), (t0 + 299, 2.0), (t0 + 650, 5.0)]
    w = latency_windows(points, t0, 300.0, end_s=1000.0)
    assert [x["count"] for x in w] == [3, 0, 1, 0]
    assert w[0]["p50"] == 2.0 and w[0]["max"] == 3.0 and w[1]["p50"] is None
    assert (w[2]["start_s"], w[2]["end_s"]) == (600.0, 900.0)
    # words that ended after the run (flushed when the capture stopped): the last window
    w = latency_windows([*points, (t0 + 1000.4, 4.0)], t0, 300.0, end_s=1000.0)
    assert [x["count"] for x in w] == [3, 0, 1, 1]
    assert [x["count"] for x in latency_windows(points, t0, 300.0)] == [3, 0, 1]


def test_fencing_intervals_and_writes_of_a_paused_owner() -> None:
    samples: list[tuple[int, str | None]] = [
        (1000, "a"), (1100, "a"), (1200, None), (1300, "b"), (1400, "b"), (1500, "a"),
        (1600, "b")]
    spans = foreign_intervals(samples, "a")
    assert spans == [(1200, 1400)]  # the lone foreign sample at 1600 spans nothing
    made = [Rec(f"{ms}-0", "transcript", "s", i, kind="committed", hops=(("asr", w),))
            for i, (ms, w) in enumerate([(1050, "a"), (1250, "a"), (1350, "b"), (1550, "a")])]
    assert [r.ms for r in fenced_writes(made, "asr", "a", spans)] == [1250]


def test_dead_letter_reasons_follow_the_runtime() -> None:
    assert dead_reason("malformed: bad") == "malformed"
    assert dead_reason("rejected: no voice") == "rejected"
    assert dead_reason("after the end of its stream") == "late"
    assert dead_reason("oversized: 5 bytes") == "oversized"
    assert dead_reason("delivered 3 times without completing (a worker died)") == "attempts"
    assert dead_reason("RuntimeError: boom") == "failed"


def test_the_fault_schedule() -> None:
    assert parse_duration("1m30s") == 90 and parse_duration("2h") == 7200
    assert parse_duration("45") == 45 and parse_duration("0.5m") == 30
    with pytest.raises(ValueError):
        parse_duration("soon")
    got = parse_faults("redis:2m,kill:60s,stop@tts:90,link:150s,kill:100", 300)
    assert got == [FaultSpec("kill", 60, "asr"), FaultSpec("stop", 90, "tts"),
                   FaultSpec("kill", 100, "mt"), FaultSpec("redis", 120),
                   FaultSpec("link", 150)]
    assert parse_faults("none", 300) == []
    for bad in ("kill:400s", "kill", "boom:10", "redis@asr:10", "kill@gpu:10"):
        with pytest.raises(ValueError):
            parse_faults(bad, 300)
    c = cycle(1800, 180)
    assert [f.at_s for f in c] == [180.0 * i for i in range(1, 10)]
    assert [f.label for f in c[:6]] == ["kill@asr", "stop@mt", "redis", "link", "kill@mt",
                                        "stop@tts"]


# -- the same rules on real streams -----------------------------------------------------------


async def test_accounting_reads_real_events_written_to_redis() -> None:
    """Real events as the stages write them (flat fields, msgpack payloads, JSON traces),
    with a duplicated speech piece and a translation never spoken: found from Redis."""
    keys = Keys("tsoak" + uuid.uuid4().hex[:8])
    r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    room, session = "r1", "s1"
    part = Partition(room, session)
    now = time.time()
    base: dict[str, Any] = {"room": room, "session": session, "capture_start": now - 2,
                            "capture_end": now - 1}
    hop = [Hop(stage="asr", worker="w-asr", t_in=now, t_out=now)]
    try:
        a = keys.stream("audio", part)
        for seq in range(3):
            await r.xadd(a, AudioChunk(**base, seq=seq, utterance=0, offset=seq * 8, samples=8,
                                       rate=16000, speech_prob=0.9, vad="speech",
                                       pcm=b"\0" * 16).to_fields())
        await r.xadd(a, ControlEvent(**base, seq=3, action="end").to_fields())
        t = keys.stream("transcript", part)
        for seq, text in enumerate(["Good morning.", "See you."]):
            await r.xadd(t, Transcript(**base, seq=seq, kind="partial", utterance=0, text=text,
                                       lang="en", sample_start=0, sample_end=8).to_fields())
            await r.xadd(t, Transcript(**base, seq=seq, kind="committed", utterance=0,
                                       text=text, lang="en", sample_start=0, sample_end=8,
                                       trace=hop).to_fields())
        await r.xadd(t, ControlEvent(**base, seq=2, action="end").to_fields())
        tr = keys.stream("translation", Partition(room, session, "es"))
        for seq, src, text in ((1, "Good morning.", "Buenos días."), (3, "See you.", "Hasta.")):
            await r.xadd(tr, Translation(**base, seq=seq, kind="committed", utterance=0,
                                         src_seq=seq // 2, src_seq_first=seq // 2,
                                         src_lang="en", lang="es", text=text,
                                         source_text=src).to_fields())
        await r.xadd(tr, ControlEvent(**base, seq=4, action="end").to_fields())
        sp = keys.room_stream("speech", room, "es")
        piece = Speech(**base, seq=1, part=0, last=True, lang="es", src_seq=0,
                       text="Buenos días.", rate=16000, samples=4, duration=0.1,
                       pcm=b"\1" * 8, emitted=now, trace=[*hop, Hop(
                           stage="tts", worker="w-tts", t_in=now, t_out=now)])
        await r.xadd(sp, piece.to_fields())
        await r.xadd(sp, piece.to_fields())  # written twice
        await r.xadd(sp, ControlEvent(**base, seq=4, action="end").to_fields())
        dead = DeadLetter(stage="tts", worker="w-tts", stream=tr, entry_id="1-0",
                          error="rejected: no voice", attempts=1, failed_at=now,
                          session=session, original={"seq": b"7"})
        await r.xadd(keys.deadletter(room), dead.to_fields())

        tail = StreamTail(r, {sp: (room, "es")}, {keys.deadletter(room): room})
        assert await tail.poll() == 4 and await tail.poll() == 0
        assert tail.end_of(room, "es", session) is not None
        assert tail.dead[0]["reason"] == "rejected" and tail.dead[0]["seq"] == 7
        assert tail.dead[0]["family"] == "translation:es"
        got = tail.session(room, "es", session)
        assert got[0].worker("tts") == "w-tts" and got[0].last and got[0].text == "Buenos días."
        c = check_session(await read_stream(r, a), await read_stream(r, t),
                          {"es": await read_stream(r, tr)}, {"es": got})
        es = c.langs["es"]
        assert (c.audio_chunks, c.transcripts, es.translations, es.pieces) == (3, 2, 2, 1)
        assert es.duplicated_pieces == [(1, 0)] and c.duplicated == 1
        assert es.unspoken == [3] and c.lost == 1
        assert c.out_of_order == 0 and c.text_errors == 0
        assert es.latencies and es.latencies[0][1] == pytest.approx(1.0, abs=1e-3)
        # a malformed entry is left out, not a crash
        assert parse_entry("1-0", {b"type": b"speech", b"seq": b"x"}) is None
    finally:
        found = [k async for k in r.scan_iter(match=f"{keys.prefix}:*")]
        if found:
            await r.delete(*found)
        await r.aclose()


# -- the command ------------------------------------------------------------------------------

FAULTS = "kill@asr:20s,stop@tts:40s,redis:60s,link:75s,kill@mt:95s"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S2ST_")}
    if "S2ST_SPEECH_DIR" in os.environ:
        env["S2ST_SPEECH_DIR"] = os.environ["S2ST_SPEECH_DIR"]
    # espeak-ng: the cheapest voice, so the soak measures the bus and its faults rather than
    # Kokoro's pace on this CPU (docs/tts.md, "In time, piece by piece")
    env.update(PYTHONUNBUFFERED="1", S2ST_TTS_BACKENDS="*=espeak")
    return env


def _left_behind(port: int, run_dir: str) -> list[str]:
    """Processes of the run still alive: its Redis, or anything talking to it."""
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.environ() if "ops.cli" in cmd else {}
        except (psutil.Error, OSError):
            continue
        if run_dir in cmd or f":{port}" in cmd or f":{port}/" in env.get("S2ST_REDIS_URL", ""):
            out.append(f"{proc.info['pid']} {cmd}")
    return out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_two_minutes_with_each_fault_loses_and_repeats_nothing(
        tmp_path: Path, speech_dir: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "bench", "soak", "--duration", "120",
         "--faults", FAULTS, "--window", "30s", "--sample-s", "5", "--end-wait", "90",
         "--json", str(out), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=540)
    log = out.with_suffix(".log")
    tail = (done.stdout[-4000:] + done.stderr[-3000:] +
            (log.read_text(errors="replace")[-4000:] if log.exists() else ""))
    assert out.exists(), tail
    report = json.loads(out.read_text())
    assert done.returncode == 0, (report["failures"], tail)
    assert report["ok"] and report["failures"] == []
    t = report["totals"]
    assert (t["lost"], t["duplicated"], t["out_of_order"], t["hung"], t["text_errors"]) == \
        (0, 0, 0, 0, 0), t
    assert t["sessions_done"] >= 5 and t["transcripts"] >= 20
    es = t["by_lang"]["es"]
    assert es["spoken"] >= 10 and es["pieces"] >= es["spoken"]
    assert report["dead_letters"]["count"] == 0
    # every fault of each kind was applied and had its effect
    faults = report["faults"]
    assert [f["kind"] for f in faults] == ["kill", "stop", "redis", "link", "kill"]
    assert all(f["applied"] for f in faults), faults
    kill, stop, restart, link = faults[:4]
    assert kill["exit_status"] == -9 and kill["replacement_ready_s"] is not None
    assert stop["stopped_s"] > stop["lease_ttl_s"] and stop["fenced_writes"] == 0
    assert restart["aof_kept"] and restart["answered_after_s"] < 10
    assert link["connections_cut"] >= 1 and link["written_during"] == 0
    assert link["resync_s"] is not None and link["resync_s"] < 10
    # latency per window, RSS over time of every kind of process
    windows = report["latency"]["windows"]["es"]
    assert len(windows) == 4 and sum(1 for w in windows if w["count"]) >= 3
    assert all(w["p95"] >= w["p50"] > 0 for w in windows if w["count"])
    names = {s["name"] for s in report["rss"]["samples"]}
    assert {"asr1", "asr2", "mt1", "tts1", "redis", "soak", "play-soak1-es"} <= names
    assert sum(1 for s in report["rss"]["samples"] if s["name"] == "redis") >= 15
    assert report["redis_memory"] and report["workers_at_stop"] == dict.fromkeys(
        ["asr1", "asr2", "mt1", "mt2", "tts1", "tts2"], 0)
    assert Path(report["plot"]).stat().st_size > 10_000
    port = int(report["redis"]["url"].rsplit(":", 1)[1].split("/")[0])
    assert _left_behind(port, report["redis"]["run_dir"]) == []
    assert not Path(report["redis"]["run_dir"]).exists()  # ok: its AOF is removed


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_stopped_by_ctrl_c_leaves_nothing_running(tmp_path: Path, speech_dir: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "bench", "soak", "--duration", "300",
         "--faults", "stop@asr:8s", "--json", str(out), "--state-dir", str(tmp_path / "s")],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 200
    for line in proc.stdout:  # until the worker is paused (SIGSTOP): the hardest moment
        seen.append(line)
        if "fault at" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the soak did not stop within 120 s of SIGINT: "
                             + "".join(seen)) from None
    assert proc.returncode == 130, "".join(seen) + rest
    report = json.loads(out.read_text())
    assert report["interrupted"] and not report["ok"]
    port = int(report["redis"]["url"].rsplit(":", 1)[1].split("/")[0])
    assert _left_behind(port, report["redis"]["run_dir"]) == []
