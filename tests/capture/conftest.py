"""Fixtures for the capture agent tests: real clips and files made from them with ffmpeg."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

LJ_CONTINUOUS = "ljspeech_LJ001-0001_to_0032_continuous"
SHORT_CLIP = "ljspeech_LJ001-0002"  # 1.9 s of read speech
DEV_CLIP = "ljspeech_LJ001-0001"  # 9.7 s of read speech
NOISY = "extra_test"


@pytest.fixture(scope="session")
def clip(manifest: dict[str, dict[str, Any]]) -> Callable[[str], Path]:
    def get(clip_id: str) -> Path:
        path = Path(manifest[clip_id]["path"])
        assert path.exists(), path
        return path

    return get


@pytest.fixture(scope="session")
def ffmpeg() -> Callable[..., Path]:
    """Run ffmpeg to convert `src` into `dst` with extra arguments; returns dst."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.fail("ffmpeg is needed to make the test inputs")

    def convert(src: Path, dst: Path, *args: str) -> Path:
        subprocess.run(
            [exe, "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *args, str(dst)],
            check=True,
        )
        return dst

    return convert


@pytest.fixture(scope="session")
def stereo_44k(tmp_path_factory: pytest.TempPathFactory, clip, ffmpeg) -> dict[str, Path]:
    """The dev clip as 44.1 kHz stereo WAV and MP3 (same level in both channels)."""
    out = tmp_path_factory.mktemp("stereo")
    src = clip(DEV_CLIP)
    wav = ffmpeg(
        src,
        out / "dev_44k_stereo.wav",
        "-af",
        "aresample=44100:resampler=soxr:precision=28,pan=stereo|c0=c0|c1=c0",
    )
    mp3 = ffmpeg(wav, out / "dev_44k_stereo.mp3", "-b:a", "192k")
    return {"wav": wav, "mp3": mp3}


def _snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    n = min(len(reference), len(test))
    noise = np.sum((reference[:n] - test[:n]) ** 2)
    return float(10 * np.log10(np.sum(reference[:n] ** 2) / max(noise, 1e-20)))


@pytest.fixture(scope="session")
def snr_db() -> Callable[[np.ndarray, np.ndarray], float]:
    """Signal-to-error ratio in dB of `test` against `reference` (over the common length)."""
    return _snr_db


# --- the bus: a unique key prefix per test on the local Redis, cleaned afterwards -------


@pytest.fixture
def key_prefix(scratch_prefix: Callable[[str], str]) -> str:
    """A fresh key prefix on the local Redis; every key under it is deleted afterwards."""
    return scratch_prefix("tcap")


@pytest.fixture(autouse=True)
def _logs_to_this_test() -> None:
    """structlog keeps the stderr it was configured with; an earlier in-process command
    may have left it pointing at another test's (closed) capture stream."""
    from bus.logs import configure_logging

    configure_logging("console", "info")
