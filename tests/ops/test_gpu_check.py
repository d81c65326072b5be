"""`s2st bench gpu` and ops/gpu-check.sh: the CPU dry run, the refusal without CUDA, the script."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ops import gpu

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ops" / "gpu-check.sh"
LOCAL_URL = "redis://127.0.0.1:6379/0"
TOP_KEYS = {"bench", "when", "command", "dry_run", "device", "host", "versions", "p95_limit_s",
            "asr", "tts", "llm", "gpu_memory_mib", "stack", "sessions_per_gpu"}
NO_CUDA = bool(gpu.cuda_problems())


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S2ST_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), S2ST_REDIS_URL=LOCAL_URL, **extra)
    return env


def s2st(*args: str, timeout: float = 280) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=ROOT, env=_env(),
                          text=True, capture_output=True, timeout=timeout)


@pytest.fixture
def key_prefix(scratch_prefix: Callable[[str], str]) -> str:
    return scratch_prefix("tgpu")  # the ramp adds -<run id>: its keys go too


def check_components(data: dict[str, Any]) -> None:
    assert TOP_KEYS <= data.keys(), TOP_KEYS - data.keys()
    assert data["bench"] == "gpu" and data["dry_run"] is True and data["device"] == "cpu"
    assert data["p95_limit_s"] == 1.5
    asr = data["asr"]
    assert asr["model"] == "tiny.en" and [r["batch"] for r in asr["batches"]] == [1, 2]
    assert all(r["rtf"] > 0 and r["words"] > 0 for r in asr["batches"])
    tts = data["tts"]
    assert tts["backend"] == "kokoro" and tts["providers"] == ["CPUExecutionProvider"]
    assert tts["rtf"] > 0 and tts["audio_s"] > 1
    llm = data["llm"]
    assert llm["quantize"] == "none" and llm["loaded_in_4bit"] is False
    assert llm["new_tokens"] == 16 and llm["tokens_per_s"] > 0 and llm["parameters"] > 0
    memory = data["gpu_memory_mib"]
    assert memory["components_peak"] > 0 and memory["total"] is None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dry_run_end_to_end_writes_every_key(tmp_path: Path, key_prefix: str) -> None:
    out = tmp_path / "gpu.json"
    done = s2st("bench", "gpu", "--dry-run", "--json", str(out), "--key-prefix", key_prefix,
                "--state-dir", str(tmp_path / "st"))
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    check_components(data)
    stack = data["stack"]
    assert stack["settings"]["S2ST_MT_BACKENDS"].startswith("en-es=tinyllm")
    assert stack["asr_model"] == "tiny.en" and stack["p95_limit_s"] == 1.5
    steps = stack["steps"]
    assert steps[0]["sessions"] == 1 and steps[0]["segments"] >= 1
    assert steps[0]["segment_latency_s"]["p95"] is not None
    # the answer follows from the steps: the last of the unbroken run within the limit
    kept = list(itertools.takewhile(
        lambda s: s["segment_latency_s"]["p95"] is not None
        and s["segment_latency_s"]["p95"] <= 1.5 and not s["errors"], steps))
    assert data["sessions_per_gpu"] == (kept[-1]["sessions"] if kept else 0)
    assert data["gpu_memory_mib"]["stack_peak"] > 0
    assert "sessions:" in done.stdout


@pytest.mark.skipif(not NO_CUDA, reason="this host has CUDA")
def test_refuses_without_cuda(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = s2st("bench", "gpu", "--json", str(out), timeout=60)
    assert done.returncode == 2
    assert "no usable CUDA GPU here" in done.stderr and "--dry-run" in done.stderr
    assert not out.exists()


def test_dry_run_plan_is_tiny_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    gpu.register(None, parser.add_subparsers())
    args = parser.parse_args(["gpu", "--dry-run"])
    plan = gpu.plan_from_args(args)
    assert (plan.device, plan.asr_model, plan.quantize, plan.sessions) == (
        "cpu", "tiny.en", "none", [1, 2])
    full = gpu.plan_from_args(parser.parse_args(["gpu"]))
    assert (full.device, full.quantize, full.compute_type, full.p95_limit_s) == (
        "cuda", "4bit", "float16", 1.5)
    monkeypatch.setenv("S2ST_ASR_MODEL", "/models/whisper-large-v3")
    env = gpu.stack_settings(full, Path("/tmp/x"))
    assert env["S2ST_ASR_MODEL"] == "/models/whisper-large-v3"
    assert env["S2ST_TTS_DEVICE"] == "cuda"
    assert json.loads(env["S2ST_MT_MODELS"])["tinyllm"]["quantize"] == "4bit"
    with pytest.raises(ValueError):
        gpu.plan_from_args(parser.parse_args(["gpu", "--sessions", "0"]))


def test_script_syntax_and_help() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    done = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "--no-install" in done.stdout and "--dry-run" in done.stdout
    bad = subprocess.run([str(SCRIPT), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this host has nvidia-smi")
def test_script_refuses_without_a_gpu_before_installing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = subprocess.run([str(SCRIPT), "--venv", str(venv)], capture_output=True, text=True,
                          timeout=30, env=_env())
    assert done.returncode == 2 and "no CUDA GPU visible" in done.stderr
    assert not venv.exists()  # nothing created, nothing installed


@pytest.mark.timeout(240)
def test_script_dry_run_without_installing(tmp_path: Path) -> None:
    """The script's dry-run path on this venv as it is (--no-install: pip is never run)."""
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [str(SCRIPT), "--no-install", "--venv", sys.prefix, "--dry-run", "--json", str(out),
         "--", "--skip-stack"],
        capture_output=True, text=True, timeout=230, env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installing" not in done.stderr
    data = json.loads(out.read_text())
    check_components(data)
    assert data["stack"] is None and data["sessions_per_gpu"] is None


def test_a_component_that_fails_is_named(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = s2st("bench", "gpu", "--dry-run", "--skip-stack", "--asr-model",
                str(tmp_path / "no-such-model"), "--json", str(out), timeout=120)
    assert done.returncode == 1
    assert "the asr check failed on cpu" in done.stderr
    assert not out.exists()
