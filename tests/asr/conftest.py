"""Fixtures for the ASR tests: loaded models (once per run) and decoded clips."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_decoder():
    from workers.asr.decoder import WhisperDecoder
    from workers.asr.models import load_model

    return WhisperDecoder(load_model("tiny.en", device="cpu", allow_download=False))


@pytest.fixture(scope="session")
def base_decoder():
    from workers.asr.decoder import WhisperDecoder
    from workers.asr.models import load_model

    return WhisperDecoder(load_model("base", device="cpu", allow_download=False))


@pytest.fixture(scope="session")
def lj_clips(manifest: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [
        row
        for key, row in sorted(manifest.items())
        if key.startswith("ljspeech_LJ001-") and "continuous" not in key
    ]
    assert len(rows) == 32, "the development set should hold 32 LJ Speech sentences"
    return rows
