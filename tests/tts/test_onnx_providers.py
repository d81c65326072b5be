"""The ONNX voices' execution providers: S2ST_TTS_DEVICE, and no silent CPU run for cuda."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from workers.tts.backends import _onnx
from workers.tts.backends.base import BackendUnavailable
from workers.tts.backends.kokoro import KokoroSynthesizer

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_cpu_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _onnx.providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.delenv("S2ST_TTS_DEVICE", raising=False)
    expected = ["CUDAExecutionProvider", "CPUExecutionProvider"] if HAS_CUDA else [
        "CPUExecutionProvider"]
    assert _onnx.providers() == expected
    monkeypatch.setenv("S2ST_TTS_DEVICE", "tpu")
    with pytest.raises(ValueError, match="S2ST_TTS_DEVICE"):
        _onnx.providers()


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA provider")
def test_cuda_without_onnxruntime_gpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        _onnx.providers("cuda")
    monkeypatch.setenv("S2ST_TTS_DEVICE", "cuda")
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        KokoroSynthesizer().load()
