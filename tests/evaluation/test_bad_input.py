"""Bad input at the edges while a real session is being translated.

One English session is spoken at real-time pace through real workers (tiny.en, Apertium,
espeak-ng) and heard by a player, while: garbage is added with redis-cli into each of its
streams (audio, transcript, translation, speech) and into the announcements; oversized and
impossible events go into a second session's streams and the room's speech stream; capture agents are started with an invalid room id, a file with
NaN samples and a file of full-scale noise; and a third session's capture agent is killed so
the session never ends by itself. The good session is translated and heard in full, every
bad entry is in the dead-letter stream with its reason (or, on the speech stream, skipped and
counted by the player), every bad start is refused with one clear line, the abandoned
session is ended by the workers, and no worker fails.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import soundfile as sf
from fault_helpers import Fleet, check_session, dead_letters, events, worker_env

from bus.events import ControlEvent, Transcript
from bus.keys import Keys, Partition

pytestmark = pytest.mark.slow

LOCAL_URL = "redis://127.0.0.1:6379/0"
ROOM = "edge"
CLIP = "ljspeech_LJ001-0001"


def _cli(*args: str) -> None:
    cli = shutil.which("redis-cli") or "redis-cli"
    subprocess.run([cli, "-u", LOCAL_URL, *args], check=True, capture_output=True, timeout=30)


def _wait(what: Any, timeout: float, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(poll)


def test_bad_input_is_dead_lettered_or_refused_and_the_good_session_is_served(
        tmp_path: Path, manifest: dict[str, Any]) -> None:
    prefix = "tbad" + uuid.uuid4().hex[:8]
    keys = Keys(prefix)
    r = redis.Redis.from_url(LOCAL_URL)
    env = worker_env(LOCAL_URL, prefix, S2ST_SESSION_TIMEOUT_S="3",
                     S2ST_MAX_EVENT_BYTES="1048576")
    fleet = Fleet(env, logs=tmp_path)
    nan = tmp_path / "nan.wav"
    signal_ = np.random.default_rng(0).uniform(-0.3, 0.3, 48000).astype(np.float32)
    signal_[20000:20100] = np.nan
    sf.write(str(nan), signal_, 16000, subtype="FLOAT")
    noise = tmp_path / "noise.wav"
    sf.write(str(noise), np.random.default_rng(1).uniform(-1, 1, 16000 * 6).astype(np.float32),
             16000, subtype="FLOAT")
    try:
        for stage in ("asr", "mt", "tts"):
            fleet.start(stage, stage)
        assert subprocess.run([*fleet.argv("room", "create", ROOM, "--langs", "es")],
                              env=env, capture_output=True, timeout=60).returncode == 0
        _wait(lambda: all(r.zcard(keys.workers(s)) == 1 for s in ("asr", "mt", "tts")), 120)
        player = fleet.start("player", "play", "--room", ROOM, "--lang", "es", "--until-ended",
                             "--out", str(tmp_path / "es.wav"), "--json",
                             str(tmp_path / "player.json"), S2ST_LOG_LEVEL="info")
        good = fleet.start("capture-good", "capture", "--room", ROOM, "--session", "good",
                           "--lang", "en", "--file", str(manifest[CLIP]["path"]), "--no-meter")
        abandoned = fleet.start("capture-gone", "capture", "--room", ROOM, "--session", "gone",
                                "--lang", "en", "--file", str(manifest[CLIP]["path"]),
                                "--no-meter")
        # -- refused at the edge, with one clear line ---------------------------------------
        refused = {
            "invalid room id": fleet.run("capture", "--room", "bad room}", "--session", "x",
                                         "--lang", "en", "--file", str(noise)),
            "corrupt audio": fleet.run("capture", "--room", ROOM, "--session", "nan",
                                       "--lang", "en", "--file", str(nan), "--fast"),
            "invalid room id ": fleet.run("play", "--room", "../x", "--lang", "es"),
        }
        for why, (code, err) in refused.items():
            assert code == 2 and why.strip() in err and len(err.strip().splitlines()) == 1, \
                (why, code, err)
        assert r.hget(keys.sessions(ROOM), "nan") is None  # nothing half-registered
        # full-scale noise is audio like any other: served without a crash, no hallucination
        noisy = fleet.start("capture-noise", "capture", "--room", ROOM, "--session", "noise",
                            "--lang", "en", "--file", str(noise), "--no-meter")
        # -- garbage into every stream of the live session -------------------------------------
        good_part = Partition(ROOM, "good")
        _wait(lambda: r.exists(keys.stream("translation", Partition(ROOM, "good", "es"))), 60)
        abandoned.send_signal(signal.SIGKILL)  # mid-session: it never ends by itself
        streams = [keys.stream("audio", good_part), keys.stream("transcript", good_part),
                   keys.stream("translation", Partition(ROOM, "good", "es"))]
        for key in streams:
            _cli("XADD", key, "*", "hello", "world")
            _cli("XADD", key, "*", "v", "1", "type", "audio", "room", ROOM, "session", "good")
        _cli("XADD", keys.room_stream("speech", ROOM, "es"), "*", "garbage", "yes")
        _cli("XADD", keys.announce, "*", "garbage", "yes")  # what wakes every worker's discovery
        # -- oversized and impossible events of another session ----------------------------------
        junk = Partition(ROOM, "junk")
        # registered in one transaction: a worker's janitor reading an active session without
        # a heartbeat in between would end it before its entries below are added
        with r.pipeline(transaction=True) as pipe:
            pipe.hset(keys.sessions(ROOM), "junk", json.dumps({"source_lang": "en",
                                                               "started": time.time()}))
            pipe.hset(keys.alive(ROOM), "junk", int(time.time() * 1000))
            pipe.hset(keys.status(ROOM), "junk", "active")
            pipe.execute()
        big = {"v": "1", "type": "audio", "room": ROOM, "session": "junk", "seq": "0",
               "capture_start": str(time.time()), "capture_end": str(time.time()),
               "payload": b"\x00" * 2_000_000}
        r.xadd(keys.stream("audio", junk), big)  # 2 MB: over the 1 MiB limit of this test
        r.xadd(keys.stream("audio", junk), {**big, "payload": b"\x81\xa3pcm\xc4\x00",
                                             "samples": "-5"})  # a negative sample count
        r.xadd(keys.stream("transcript", junk), {**big, "type": "transcript", "payload": b"\x80",
                                                 "text": "word " * 300_000})  # 1.5 MB of text
        r.xadd(keys.stream("translation", Partition(ROOM, "junk", "es")),
               {**big, "type": "translation", "payload": b"\x80", "text": "palabra " * 200_000})
        r.xadd(keys.room_stream("speech", ROOM, "es"), {**big, "type": "speech"})  # 2 MB of PCM
        # -- the good session is translated and heard in full -------------------------------------
        assert good.wait(timeout=90) == 0
        assert noisy.wait(timeout=60) == 0
        _wait(lambda: all(
            any(isinstance(e, ControlEvent) and e.action == "end"
                for e in events(r, keys.room_stream("speech", ROOM, "es"), s))
            for s in ("good", "gone")), 120)
        counts = check_session(r, keys, ROOM, "good", ["es"])
        assert counts["transcripts"] >= 2
        said = " ".join(e.text for e in events(r, keys.stream("transcript", good_part))
                        if isinstance(e, Transcript) and e.kind == "committed").lower()
        assert "printing" in said and "exhibition" in said
        # the abandoned session was ended by the workers after its heartbeat stopped
        assert r.hget(keys.status(ROOM), "gone") == b"ended"
        [end] = [e for e in events(r, keys.stream("audio", Partition(ROOM, "gone")))
                 if isinstance(e, ControlEvent) and e.action == "end"]
        assert end.reason == "timeout"
        noise_text = [e.text for e in events(r, keys.stream("transcript",
                                                               Partition(ROOM, "noise")))
                      if isinstance(e, Transcript) and e.kind == "committed" and e.text]
        assert len(" ".join(noise_text).split()) <= 3, noise_text
        # every bad entry dead-lettered once, with its reason; the junk session is finished
        dead = dead_letters(r, keys, ROOM)
        by_stream: dict[str, list[str]] = {}
        for d in dead:
            by_stream.setdefault(keys.local_part(d.stream), []).append(d.error)
        for key in streams:
            errors = by_stream.get(keys.local_part(key), [])
            assert len(errors) == 2 and all(e.startswith("malformed") for e in errors), \
                (key, errors)
        junk_errors = by_stream.get(keys.local_part(keys.stream("audio", junk)), [])
        assert sorted(e.split(":")[0] for e in junk_errors) == ["malformed", "oversized"]
        for family, part in (("transcript", junk), ("translation", Partition(ROOM, "junk", "es"))):
            assert [e.split(":")[0] for e in by_stream.get(
                keys.local_part(keys.stream(family, part)), [])] == ["oversized"], family
        oversized = next(d for d in dead if d.error.startswith("oversized"))
        assert all(len(v) <= 1024 for v in oversized.original.values())
        # the player skipped the garbage on the speech stream and counted it
        r.hset(keys.status(ROOM), "junk", "ended")
        try:
            assert player.wait(timeout=60) == 0
        except subprocess.TimeoutExpired:
            ended = {e.session for e in events(r, keys.room_stream("speech", ROOM, "es"))
                     if isinstance(e, ControlEvent) and e.action == "end"}
            raise AssertionError(
                f"the player did not stop; sessions: {r.hgetall(keys.status(ROOM))}, ended on "
                f"the speech stream: {sorted(ended)}\n{fleet.explain({'player': None})}"
            ) from None
        summary = json.loads((tmp_path / "player.json").read_text())
        assert summary["counts"]["malformed"] == 2 and summary["counts"]["released"] >= 2
    finally:
        codes = fleet.stop_all()
        for key in r.scan_iter(match=prefix + ":*", count=1000):
            r.delete(key)
    workers = {n: c for n, c in codes.items() if n in ("asr", "mt", "tts")}
    assert workers == {"asr": 0, "mt": 0, "tts": 0}, fleet.explain(codes)
