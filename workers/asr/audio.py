"""Reading audio files for benchmarks and tests: float32 mono 16 kHz."""

from __future__ import annotations

import os

import numpy as np

from .decoder import SAMPLE_RATE


def load_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a file with soundfile, downmix to mono and resample to 16 kHz with soxr."""
    import soundfile as sf

    audio, rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    return np.ascontiguousarray(mono, dtype=np.float32)
