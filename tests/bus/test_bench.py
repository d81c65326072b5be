"""`s2st bench bus` end to end, small: the JSON holds what the docs quote."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("on", ["standalone", "cluster"])
def test_bench_bus_writes_the_figures(tmp_path: Path, on: str,
                                      request: pytest.FixtureRequest) -> None:
    # (on a cluster the sessions' rooms are on several slots: nothing may read across them)
    if on == "cluster":
        url, flags = request.getfixturevalue("redis_cluster").url, ["--redis-cluster"]
    else:
        url, flags = request.getfixturevalue("local_redis"), []
    out = tmp_path / "bus.json"
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "bench", "bus", "--sessions", "1,4", "--events", "400",
         "--rate", "200", "--duration", "1", "--json", str(out),
         "--redis-url", url, *flags, "--key-prefix", "tb" + uuid.uuid4().hex[:8]],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    runs = report["runs"]
    assert 0 < report["redis_round_trip_ms"]["p50"] <= report["redis_round_trip_ms"]["p99"]
    assert [r["sessions"] for r in runs] == [1, 4]
    for r in runs:
        assert r["events"] == 400 and len(r["events_per_s_by_stage"]) == 3
        assert r["events_per_s"] > 0 and r["single_worker_events_per_s"] > 0
        assert r["bare_loop_events_per_s"] > 0
        assert r["latency_events"] > 0
        assert 0 < r["hop_latency_ms"]["p50"] <= r["hop_latency_ms"]["p95"] \
            <= r["hop_latency_ms"]["p99"]
    assert "one worker alone" in done.stdout
