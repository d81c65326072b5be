"""onnxruntime session settings shared by the ONNX voices."""

from __future__ import annotations

import os
from typing import Any

_THREADS: int | None = None  # set by the worker's settings (--threads), else the variable


def set_cpu_threads(threads: int | None) -> None:
    """Threads per model for the voices loaded from now on in this process (None: as
    `S2ST_TTS_THREADS` says); the TTS worker sets it from its settings."""
    global _THREADS
    if threads is not None and threads < 1:
        raise ValueError(f"S2ST_TTS_THREADS must be >= 1, not {threads}")
    _THREADS = threads


def cpu_threads() -> int:
    """Threads per model: the worker's setting or `S2ST_TTS_THREADS`, else the CPU count
    capped at 4."""
    if _THREADS is not None:
        return _THREADS
    env = os.environ.get("S2ST_TTS_THREADS", "").strip()
    if env:
        value = int(env)
        if value < 1:
            raise ValueError(f"S2ST_TTS_THREADS must be >= 1, not {value}")
        return value
    return max(1, min(4, os.cpu_count() or 1))


DEVICES = ("auto", "cpu", "cuda")


def providers(device: str | None = None) -> list[str]:
    """The onnxruntime execution providers for ``device`` (default ``S2ST_TTS_DEVICE``, ``auto``).

    ``auto`` is CUDA when the installed onnxruntime has its CUDA provider (onnxruntime-gpu),
    else the CPU. ``cuda`` without that provider is an error, never a silent CPU run.
    """
    import onnxruntime as ort

    device = (device or os.environ.get("S2ST_TTS_DEVICE", "") or "auto").strip().lower()
    if device not in DEVICES:
        raise ValueError(f"S2ST_TTS_DEVICE must be one of {', '.join(DEVICES)}, not {device!r}")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise RuntimeError(
            "S2ST_TTS_DEVICE=cuda but this onnxruntime has no CUDAExecutionProvider "
            f"(providers: {', '.join(ort.get_available_providers())}): "
            "pip uninstall onnxruntime && pip install onnxruntime-gpu")
    if device == "cpu" or not has_cuda:
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def cpu_session(model_path: str, threads: int | None = None, device: str | None = "cpu") -> Any:
    """An onnxruntime session running one graph at a time on `threads` threads.

    Sequential execution with a bounded intra-op pool measured fastest for both Kokoro and
    Piper on a 2-core host (parallel execution oversubscribes the cores). ``device`` picks the
    providers (:func:`providers`; None: ``S2ST_TTS_DEVICE``); the threads serve the CPU
    provider and the nodes CUDA does not run.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads sleep instead of spinning: a TTS worker shares its cores with ASR
    # and MT, and spinning measured no faster here under load (S2ST_TTS_SPIN=1 re-enables).
    spin = "1" if os.environ.get("S2ST_TTS_SPIN", "").strip() in {"1", "true", "yes"} else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    return ort.InferenceSession(
        model_path, sess_options=options, providers=providers(device)
    )
