"""The Silero VAD backends on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from capture_agent.audio_io import load_audio
from capture_agent.vad import FRAME_SAMPLES, create_vad

DEV_CLIP = "ljspeech_LJ001-0001"


def _probs(backend: str, audio: np.ndarray) -> np.ndarray:
    vad = create_vad(backend)
    usable = len(audio) // FRAME_SAMPLES * FRAME_SAMPLES
    return np.array([vad.probability(f) for f in audio[:usable].reshape(-1, FRAME_SAMPLES)])


def test_lite_backend_separates_speech_from_silence(clip):
    audio = load_audio(clip(DEV_CLIP))
    padded = np.concatenate([np.zeros(16000, np.float32), audio])
    probs = _probs("lite", padded)
    assert probs[:31].max() < 0.1  # one second of digital silence
    assert np.mean(probs[40:] >= 0.5) > 0.8  # read speech


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "torch-onnx"])
def test_torch_backends_agree_with_lite(clip, backend):
    audio = load_audio(clip(DEV_CLIP))[: 5 * 16000]
    lite = _probs("lite", audio)
    other = _probs(backend, audio)
    assert np.max(np.abs(lite - other)) < 0.02


def test_state_reset_and_frame_size():
    vad = create_vad("lite")
    noise = np.random.default_rng(1).normal(0, 0.1, FRAME_SAMPLES).astype(np.float32)
    first = vad.probability(noise)
    vad.probability(noise)
    vad.reset()
    assert vad.probability(noise) == pytest.approx(first, abs=1e-6)
    with pytest.raises(ValueError, match="512"):
        vad.probability(noise[:100])
    with pytest.raises(ValueError, match="unknown VAD backend"):
        create_vad("webrtc")
