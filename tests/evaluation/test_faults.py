"""Faults under a steady load: workers SIGKILLed, Redis restarted, a capture agent cut off.

Three real-time English sessions go through real workers, two of each stage (tiny.en,
Apertium into Spanish and Catalan, espeak-ng), on a Redis with AOF. While they speak, the
worker owning the first session is SIGKILLed at each stage in turn (and replaced), Redis is
restarted, and the first capture agent's connection is cut for four seconds. Afterwards
every committed source segment has exactly one translation per target language and each
translation exactly one spoken segment, in order, with no dead letters; how long each
recovery took goes to test-artifacts/faults.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import soundfile as sf
from fault_helpers import ROOT, DroppingProxy, Fleet, check_session, dead_letters, worker_env

from bus.keys import Keys, Partition
from ops.redis_servers import RedisServer

pytestmark = pytest.mark.slow

ROOM = "faults"
LANGS = ["es", "ca"]
SESSIONS = ["s1", "s2", "s3"]
CLIP_S = 24.0
CONTINUOUS = "ljspeech_LJ001-0001_to_0032_continuous"


def _clips(manifest: dict[str, Any], tmp: Path) -> list[Path]:
    """Three different 24 s stretches of continuous read speech."""
    audio, rate = sf.read(str(manifest[CONTINUOUS]["path"]), dtype="int16")
    out = []
    for i, start in enumerate((0.0, 60.0, 120.0)):
        path = tmp / f"clip{i + 1}.wav"
        sf.write(str(path), audio[int(start * rate): int((start + CLIP_S) * rate)], rate)
        out.append(path)
    return out


def _until(what: Callable[[], bool], timeout: float, poll: float = 0.05) -> float:
    """Seconds until ``what()`` held (AssertionError after ``timeout``)."""
    began = time.monotonic()
    while not what():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(poll)
    return time.monotonic() - began


def _safe(fn: Callable[[], Any], default: Any = None) -> Any:
    try:
        return fn()
    except (redis.exceptions.RedisError, OSError):
        return default


def test_crashes_a_redis_restart_and_a_lost_capture_lose_and_repeat_nothing(
        tmp_path: Path, manifest: dict[str, Any]) -> None:
    server = RedisServer(tmp_path / "redis", args=("--appendonly", "yes",
                                                   "--appendfsync", "always")).start()
    proxy = DroppingProxy(server.port)
    prefix = "tfault" + uuid.uuid4().hex[:8]
    keys = Keys(prefix)
    r = redis.Redis.from_url(server.url, socket_timeout=5)
    env = worker_env(server.url, prefix, S2ST_ASR_MIN_DECODE_S="1.0")
    fleet = Fleet(env, logs=tmp_path)
    captures: dict[str, subprocess.Popen[bytes]] = {}
    recoveries: list[dict[str, Any]] = []
    killed_workers: list[str] = []
    try:
        room = subprocess.run([*_s2st(), "room", "create", ROOM, "--langs", ",".join(LANGS)],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert room.returncode == 0, room.stderr
        for stage in ("asr", "mt", "tts"):
            for n in (1, 2):
                fleet.start(f"{stage}{n}", stage)
        _until(lambda: all(_safe(lambda s=s: r.zcard(keys.workers(s)), 0) == 2
                           for s in ("asr", "mt", "tts")), 120, 0.2)
        clips = _clips(manifest, tmp_path)
        for session, clip in zip(SESSIONS, clips, strict=True):
            url = proxy.url if session == "s1" else server.url
            captures[session] = fleet.start(
                f"capture-{session}", "capture", "--room", ROOM, "--session", session,
                "--lang", "en", "--speaker", session, "--file", str(clip), "--no-meter",
                S2ST_REDIS_URL=url)
        t0 = time.monotonic()
        s1 = Partition(ROOM, "s1")
        leases = {"asr": keys.lease("asr", "audio", s1),
                  "mt": keys.lease("mt", "transcript", s1),
                  "tts": keys.lease("tts", "translation", Partition(ROOM, "s1", "es"))}

        # -- one worker of each stage SIGKILLed in turn, and replaced ---------------------
        for i, stage in enumerate(("asr", "mt", "tts")):
            time.sleep(max(0.0, 4.0 + 3.0 * i - (time.monotonic() - t0)))
            owner = _until(lambda k=leases[stage]: _safe(lambda: r.get(k)) is not None, 20)
            victim = r.get(leases[stage]).decode()
            fleet.kill(victim)
            killed_workers.append(victim)
            killed = time.monotonic()
            took = _until(lambda k=leases[stage], v=victim: (_safe(lambda: r.get(k)) or b"")
                          .decode() not in ("", v), 30)
            recoveries.append({"fault": f"SIGKILL {victim} (the {stage} owner of s1)",
                               "recovered_s": round(took, 2),
                               "by": r.get(leases[stage]).decode(), "waited_for_owner_s":
                               round(owner, 2), "at_s": round(killed - t0, 1)})
            fleet.start(f"{victim}-new", stage)

        # -- Redis restarted (AOF) under the running stack ------------------------------------
        before = {s: r.xlen(keys.stream("transcript", Partition(ROOM, s))) for s in SESSIONS}
        at = time.monotonic() - t0
        server.stop()
        time.sleep(1.0)
        server.start()
        after = {s: _safe(lambda s=s: r.xlen(keys.stream("transcript", Partition(ROOM, s))), 0)
                 for s in SESSIONS}
        # (the workers went on writing while the server shut down: more, never fewer)
        assert all(after[s] >= before[s] for s in SESSIONS), ("the restart lost entries",
                                                              before, after)
        took = _until(lambda: any(
            _safe(lambda s=s: r.xlen(keys.stream("transcript", Partition(ROOM, s))), 0)
            > before[s] for s in SESSIONS), 30)
        recoveries.append({"fault": "Redis stopped for 1 s and restarted from its AOF",
                           "recovered_s": round(took, 2), "at_s": round(at, 1),
                           "measured": "restart to the next transcript written"})

        # -- the first capture agent cut off from Redis for 4 s -------------------------------
        audio = keys.stream("audio", s1)
        at = time.monotonic() - t0
        proxy.drop(4.0)
        cut = r.xlen(audio)
        time.sleep(4.0)
        took = _until(lambda: _safe(lambda: r.xlen(audio), 0) > cut, 30)
        recoveries.append({"fault": "s1's capture agent cut off from Redis for 4 s",
                           "recovered_s": round(took, 2), "at_s": round(at, 1),
                           "measured": "end of the outage to its next audio chunk written"})

        # -- everything spoken, once --------------------------------------------------------------
        for session, proc in captures.items():
            assert proc.wait(timeout=120) == 0, f"capture {session} failed"

        def all_spoken() -> bool:
            for lang in LANGS:
                ended = {e.session for e in _ends(r, keys.room_stream("speech", ROOM, lang))}
                if not set(SESSIONS) <= ended:
                    return False
            return True

        _until(all_spoken, 180, 0.25)
        counts = {s: check_session(r, keys, ROOM, s, LANGS) for s in SESSIONS}
        assert dead_letters(r, keys, ROOM) == []
        for stage in leases:  # nothing left pending in any group
            for s in SESSIONS:
                parts = [Partition(ROOM, s)] if stage != "tts" else \
                    [Partition(ROOM, s, lang) for lang in LANGS]
                family = {"asr": "audio", "mt": "transcript", "tts": "translation"}[stage]
                for p in parts:
                    assert r.xpending(keys.stream(family, p), stage)["pending"] == 0
        report = {"sessions": counts, "recoveries": recoveries,
                  "clip_s": CLIP_S, "languages": LANGS}
        out = ROOT / "test-artifacts" / "faults.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(recoveries, indent=2))
        # a dead worker's streams move within the lease TTL (1.5 s) plus a discovery round
        assert all(x["recovered_s"] < 3.5 for x in recoveries if "SIGKILL" in x["fault"]), \
            recoveries
        assert all(x["recovered_s"] < 10 for x in recoveries), recoveries
    finally:
        for proc in captures.values():
            if proc.poll() is None:
                proc.kill()
        codes = fleet.stop_all()
        proxy.close()
        server.stop(kill=True)
    survivors = {n: c for n, c in codes.items()
                 if not n.startswith("capture") and n not in killed_workers}
    # SIGTERM: drained, exit 0
    assert all(c == 0 for c in survivors.values()), fleet.explain(survivors)


def _s2st() -> list[str]:
    return [sys.executable, "-m", "ops.cli"]


def _ends(r: Any, key: str) -> list[Any]:
    from bus.events import ControlEvent, decode_event

    out = []
    for _id, fields in r.xrevrange(key, count=200):
        if fields.get(b"type") == b"control" and fields.get(b"action") == b"end":
            out.append(decode_event(fields))
    assert all(isinstance(e, ControlEvent) for e in out)
    return out
