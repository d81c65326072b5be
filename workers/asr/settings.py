"""Settings of the ASR worker (``s2st asr``): ``S2ST_ASR_*`` variables, each with a flag
made from it (bus/command.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ASRSettings(BaseSettings):
    """What the ASR worker loads and how it decodes."""

    model_config = SettingsConfigDict(env_prefix="S2ST_ASR_", extra="ignore",
                                      env_ignore_empty=True)

    model: str = Field("tiny.en", description="tiny.en, base, small, large-v3... or a local "
                       "folder")
    device: str = Field("auto", description="auto, cpu or cuda")
    compute_type: str = Field("auto", description="auto: int8 on CPU, float16 on CUDA")
    threads: int | None = Field(None, description="CPU threads of the model")
    task: Literal["transcribe", "translate", "auto"] = Field(
        "transcribe", description="translate: Whisper writes English text from any language; "
        "auto: it does so for sessions of rooms that listen only in English")
    language: str | None = Field(None, description="override the sessions' source language "
                                 "(e.g. auto)")
    min_decode_s: float = Field(0.5, gt=0, description="new audio needed before an utterance "
                                "is decoded again")
    beam_size: int = Field(1, ge=1, description="beam size of the decoder")
    max_batch: int = Field(16, ge=1, description="sessions decoded together in one batch")

    def config(self) -> Any:
        """The stage's :class:`~workers.asr.stage.ASRConfig`."""
        from .stage import ASRConfig

        return ASRConfig(model=self.model, device=self.device, compute_type=self.compute_type,
                         cpu_threads=self.threads, task=self.task, language=self.language,
                         min_decode_s=self.min_decode_s, beam_size=self.beam_size,
                         max_batch=self.max_batch)
