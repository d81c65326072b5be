"""The command line (dry run, bad input, bench), the terminal meter and the metrics."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from capture_agent.meter import TerminalMeter, level_bar, render_status
from capture_agent.metrics import CaptureMetrics
from capture_agent.pipeline import CaptureProcessor, CaptureStats
from capture_agent.sources import FileSource
from ops.cli import main

SHORT_CLIP = "ljspeech_LJ001-0002"
LINE = re.compile(
    r"seq=(\d+) utt=(-?\d+) [S-][E-] offset=(\d+) samples=(\d+) vad=(speech|silence) p=[\d.]+ "
    r"t=[\d.]+\.\.[\d.]+"
)


def test_dry_run_prints_one_line_per_chunk(clip, capsys):
    assert (
        main(["capture", "--file", str(clip(SHORT_CLIP)), "--fast", "--dry-run", "--no-meter"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 4
    parsed = [LINE.fullmatch(line) for line in lines]
    assert all(parsed), lines
    assert [int(m.group(1)) for m in parsed] == list(range(len(lines)))
    assert " S- " in lines[0] and "-E " in lines[-1]


@pytest.mark.parametrize("content", [b"", b"not audio at all\n" * 10])
def test_bad_file_gives_one_line_and_nonzero_exit(tmp_path, capsys, content):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    assert main(["capture", "--file", str(bad), "--fast", "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(bad) in err[0]


def test_one_input_required(capsys):
    assert main(["capture", "--dry-run"]) == 2
    assert "exactly one input" in capsys.readouterr().err


def test_bench_writes_json(clip, tmp_path):
    """`s2st bench capture` in its own process, as an operator runs it: the resident memory it
    reports is the capture agent's own (the test process holds the ASR models)."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "bench", "capture", "--file", str(clip(SHORT_CLIP)),
         "--backends", "lite", "--json", str(out)],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())["results"][0]
    assert result["backend"] == "lite" and result["published"]  # to the local Redis
    assert result["audio_s"] == pytest.approx(1.9, abs=0.05)
    # the light agent: well under the 150 MB target (about 75 MB measured)
    assert 0 < result["total_cpu_s"] and 20 < result["rss_peak_mb"] < 150
    assert "lite" in done.stdout


def test_meter_and_metrics_show_the_same_figures(clip):
    processor = CaptureProcessor()
    metrics = CaptureMetrics()
    stream = io.StringIO()
    meter = TerminalMeter(stream, force=True, hz=1e9)
    for _ in processor.run(FileSource(clip(SHORT_CLIP), realtime=False)):
        metrics.update(processor.stats)
        meter.update(processor.stats)
    metrics.update(processor.stats)
    meter.update(processor.stats, final=True)
    stats = processor.stats
    assert metrics.value("s2st_capture_chunks_total") == stats.chunks_sent
    assert metrics.value("s2st_capture_utterances_total") == stats.utterances == 1
    assert metrics.value("s2st_capture_audio_in_seconds_total") == pytest.approx(
        stats.samples_in / 16000
    )
    assert metrics.value("s2st_capture_progress_ratio") == pytest.approx(1.0)
    last = stream.getvalue().split("\r")[-1]
    assert "100%" in last and f"chunks {stats.chunks_sent}" in last and last.endswith("\n")


def test_render_status_levels_and_states():
    stats = CaptureStats(
        level_dbfs=-30.0,
        speech_prob=0.93,
        vad_state="speech",
        utterance=4,
        overflows=2,
        total_samples=32000,
        samples_in=16000,
    )
    line = render_status(stats)
    assert "-30.0 dBFS" in line and "SPEECH u4" in line and "p=0.93" in line
    assert "overflows 2" in line and " 50% 00:01/00:02" in line
    assert level_bar(-60.0) == "-" * 20 and level_bar(0.0) == "#" * 20
    assert level_bar(-30.0).count("#") == 10
    assert "silence" in render_status(CaptureStats()) and "-inf" in render_status(CaptureStats())
