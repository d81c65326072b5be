"""Clocks across hosts, for real: capture agents and workers whose system clocks are shifted by
libfaketime (+5 s, -5 s) against an unshifted Redis, compared with unshifted ones in the same run.

Three relay workers: ``z`` (clock right) reads the audio streams into ``plain``; ``a`` (clock
5 s behind) reads them into ``mid``; ``b`` (clock 5 s ahead) reads ``mid`` into ``out``. Three
capture agents say the same clip at real-time pace: ``c0`` (clock right), ``cplus`` (+5 s),
``cminus`` (-5 s). Latency figures (``emitted - capture_end``, the time from the capture to each
stage's read, a stage's own time, the bus time from ``a``'s write to ``b``'s read) must be the
same for every pairing as for the unshifted one: not negative, not 5 or 10 s off.

The janitor (``S2ST_SESSION_TIMEOUT_S`` = 4): the shifted capture agents heartbeat all along and
their sessions end by themselves (``eof``), not ended early by the workers; two more agents,
``k0`` (clock right) and ``kplus`` (+5 s), are killed mid-clip, and their sessions are ended
for lack of heartbeat about the timeout after the kill, neither late nor early.

Shifting: the processes are started with libfaketime preloaded (the environment the
``faketime`` command sets, with ``FAKETIME_DONT_FAKE_MONOTONIC=1``) rather than under the
``faketime`` command itself, which forks and would stand between the test and the process's
signals and exit status. ``faketime_site/sitecustomize.py`` works around libfaketime's broken
``time.sleep`` on Python 3.11 in those processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bus.events import ControlEvent, Event, decode_event
from bus.keys import Keys, Partition

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(__file__).resolve().parent / "faketime_site"
LOCAL_URL = "redis://127.0.0.1:6379/0"
ROOM = "clk"
CLIP = "fleurs_en_1728"  # 5.8 s
LONG_CLIP = "fleurs_en_1904"  # 10.6 s: killed before its end
TIMEOUT_S = 4.0
SHIFT = 5.0


def _preload() -> str:
    """What ``faketime`` puts in LD_PRELOAD here (libfaketime's path differs by system)."""
    if shutil.which("faketime") is None:
        pytest.fail("faketime is not installed (apt-get install faketime; ./run setup does)")
    out = subprocess.run(["faketime", "-f", "+0s", "env"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    for line in out.splitlines():
        if line.startswith("LD_PRELOAD=") and "faketime" in line:
            return line.split("=", 1)[1]
    pytest.fail(f"faketime set no LD_PRELOAD: {out!r}")


class Procs:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.preload = _preload()

    def start(self, name: str, shift: float, *args: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "S2ST_WORKER_ID": name}
        if shift:
            env.update(LD_PRELOAD=self.preload, FAKETIME=f"{shift:+g}s",
                       FAKETIME_DONT_FAKE_MONOTONIC="1",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(SITE),
                                                               env.get("PYTHONPATH")])))
        with open(self.logs / f"{name}.log", "ab") as out:  # (the process has its own copy)
            proc = subprocess.Popen([sys.executable, "-m", "ops.cli", *args], cwd=ROOT,
                                    env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self, *names: str) -> dict[str, int | None]:
        for name in names:
            if self.procs[name].poll() is None:
                self.procs[name].send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name in names:
            try:
                codes[name] = self.procs[name].wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.procs[name].kill()
                codes[name] = self.procs[name].wait(timeout=10)
        return codes


def _wait(what: Any, timeout: float, why: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"{why}: not within {timeout} s"
        time.sleep(poll)


def _events(r: redis.Redis, key: str) -> list[tuple[str, Event]]:
    return [(i.decode(), decode_event(f)) for i, f in r.xrange(key)]


def _redis_now(r: redis.Redis) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "min": round(min(values), 3),
            "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


@pytest.fixture
def r() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(LOCAL_URL)
    yield client
    for key in client.scan_iter(match=f"{PREFIX}:*", count=1000):
        client.delete(key)
    client.close()


PREFIX = "tclk" + uuid.uuid4().hex[:8]


def test_latency_and_session_expiry_do_not_depend_on_the_hosts_clocks(
        tmp_path: Path, manifest: dict[str, Any], r: redis.Redis) -> None:
    prefix = PREFIX
    keys = Keys(prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S2ST_", "FAKETIME"))}
    env.update(PYTHONUNBUFFERED="1", S2ST_REDIS_URL=LOCAL_URL, S2ST_KEY_PREFIX=prefix,
               S2ST_LOG_LEVEL="info", S2ST_LEASE_TTL_MS="1500", S2ST_HEARTBEAT_MS="300",
               S2ST_DISCOVERY_MS="200", S2ST_SESSION_TIMEOUT_S=f"{TIMEOUT_S:g}")
    procs = Procs(env, tmp_path)
    captures = {"c0": 0.0, "cplus": SHIFT, "cminus": -SHIFT}
    killed = {"k0": 0.0, "kplus": SHIFT}
    workers = {"z": (0.0, "audio", "plain"), "a": (-SHIFT, "audio", "mid"),
               "b": (SHIFT, "mid", "out")}

    def capture(name: str, shift: float, clip: str) -> None:
        procs.start(name, shift, "capture", "--room", ROOM, "--session", name, "--lang", "en",
                    "--file", str(manifest[clip]["path"]), "--no-meter", "--send-all",
                    "--vad", "lite")

    def audio(session: str) -> str:
        return keys.stream("audio", Partition(ROOM, session))

    codes: dict[str, int | None] = {}
    try:
        for name, (shift, src, dst) in workers.items():
            procs.start(name, shift, "worker", "--name", name, "--input", src, "--output", dst)
        _wait(lambda: all(r.zcard(keys.workers(w)) for w in workers), 120, "workers ready")
        for name, shift in killed.items():
            capture(name, shift, LONG_CLIP)
        for name, shift in captures.items():
            capture(name, shift, CLIP)
        # the killed ones: mid-clip (2 s of audio written), with no end of their own
        _wait(lambda: all(r.xlen(audio(k)) >= 4 for k in killed), 120, "killed ones speaking")
        for name in killed:
            procs.procs[name].send_signal(signal.SIGKILL)
            procs.procs[name].wait(timeout=10)
        killed_at = _redis_now(r)
        _wait(lambda: all(procs.procs[c].poll() is not None for c in captures), 120,
              "capture agents done")
        codes.update({c: procs.procs[c].returncode for c in captures})
        _wait(lambda: all(r.hget(keys.status(ROOM), s) == b"ended" for s in [*killed, *captures]),
              60, "sessions ended")

        def relayed_to_the_end() -> bool:
            for s in captures:
                rows = _events(r, keys.stream("out", Partition(ROOM, s)))
                if not rows or not isinstance(rows[-1][1], ControlEvent):
                    return False
            return True

        _wait(relayed_to_the_end, 60, "end markers relayed through a and b")
    finally:
        codes.update(procs.stop(*workers))
        for proc in procs.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    # -- the figures ------------------------------------------------------------------------
    figures: dict[str, dict[str, Any]] = {}
    for s in captures:
        part = Partition(ROOM, s)
        plain = [e for _i, e in _events(r, keys.stream("plain", part))
                 if not isinstance(e, ControlEvent)]
        mid = [e for _i, e in _events(r, keys.stream("mid", part))
               if not isinstance(e, ControlEvent)]
        out = [e for _i, e in _events(r, keys.stream("out", part))
               if not isinstance(e, ControlEvent)]
        sent = [e for _i, e in _events(r, audio(s)) if not isinstance(e, ControlEvent)]
        series = {
            # the capture agent's own: capture_end to the chunk's write (one process's clock)
            "capture->written": [e.emitted - e.capture_end for e in sent],
            # end to end: emitted (by z, a, b) minus the capture agent's capture_end
            "e2e z": [e.emitted - e.capture_end for e in plain],
            "e2e a": [e.emitted - e.capture_end for e in mid],
            "e2e b (after a)": [e.emitted - e.capture_end for e in out],
            # from the capture to each stage's read
            "capture->z read": [e.trace[-1].t_in - e.capture_end for e in plain],
            "capture->a read": [e.trace[-2].t_in - e.capture_end for e in out],
            # bus time from a's write to b's read
            "a write->b read": [e.trace[-1].t_in - e.trace[-2].t_out for e in out],
            # a stage's own time (one process's clock: never skewed)
            "in stage b": [e.trace[-1].t_out - e.trace[-1].t_in for e in out],
        }
        figures[s] = {name: _summary(values) for name, values in series.items()}
    expiry: dict[str, Any] = {}
    for s in [*killed, *captures]:
        rows = _events(r, audio(s))
        end_id, end = rows[-1] if rows else ("0-0", None)
        record = json.loads(r.hget(keys.sessions(ROOM), s) or b"{}")
        expiry[s] = {"reason": end.reason if isinstance(end, ControlEvent) else None,
                     "record": record.get("reason", "")}
        if s in killed:  # ended by a worker: when, after the kill (its entry id: Redis's ms)
            expiry[s]["ended_after_kill_s"] = round(int(end_id.split("-")[0]) / 1000
                                                    - killed_at, 2)
    report = json.dumps({"latency_s": figures, "expiry": expiry, "exit": codes}, indent=1)
    (tmp_path / "figures.json").write_text(report)
    print(report)

    bad = {n: c for n, c in codes.items() if c != 0}
    assert not bad, (bad, {n: procs.log(n)[-3000:] for n in bad})

    # -- latency: the same as without a shift --------------------------------------------------
    base = figures["c0"]["e2e z"]  # capture and worker on the right clock
    assert base["n"] >= 5, report
    for s, series in figures.items():
        for name, f in series.items():
            where = f"{s} {name}: {f} (unshifted: {base})"
            assert f["n"] >= 5, where  # (a chunk every 0.5 s of the clip)
            assert f["min"] >= -0.05, where  # no negative latency (nothing clamped to hide it)
            assert f["median"] <= base["median"] + 1.0, where  # not 5 or 10 s off
            assert f["max"] <= base["max"] + 3.0, where
    # -- the janitor: the shifted capture agents were not ended early, the killed ones on time
    for s in captures:
        assert expiry[s] == {"reason": "eof", "record": "eof"}, (s, expiry[s])
    for s in killed:
        assert expiry[s]["reason"] == "timeout", (s, expiry[s])
        # the last heartbeat was 0..2 s (its period) before the kill; then the timeout, and
        # a worker's discovery round (0.2 s) to notice
        assert TIMEOUT_S - 2.5 < expiry[s]["ended_after_kill_s"] < TIMEOUT_S + 2.0, expiry
    # -- each process said what it measured: a warning where the clock is far off
    assert "s ahead of Redis's; timestamps use Redis's time" in procs.log("cplus")
    assert "s behind Redis's; timestamps use Redis's time" in procs.log("cminus")
    assert "s ahead of Redis's" in procs.log("b") and "s behind Redis's" in procs.log("a")
    assert "Redis's time" not in procs.log("c0") and "Redis's time" not in procs.log("z")
    assert "clock_offset_s" in procs.log("z") and "clock_offset_s" in procs.log("c0")
