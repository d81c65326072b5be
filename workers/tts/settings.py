"""Settings of the TTS worker (``s2st tts``): the ``S2ST_TTS_*`` variables, each with a flag
made from it (bus/command.py). Their values are read and checked by
:meth:`workers.tts.config.TtsConfig.from_env` and :func:`workers.tts.cli.build_stage`, whose
errors name the variable; here they are text, unset (None) meaning that reader's default."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _text(description: str) -> Any:
    return Field(None, description=description)


class TTSWorkerSettings(BaseSettings):
    """Which voice speaks which language, how pieces are cut, leveled and paced."""

    model_config = SettingsConfigDict(env_prefix="S2ST_TTS_", extra="ignore")

    backends: str | None = _text("e.g. es=kokoro,en=piper,*=espeak")
    fallback: str | None = _text("default espeak; empty: none")
    first_words: str | None = _text("words in a first piece (4)")
    max_words: str | None = _text("words in any piece (24)")
    max_chars: str | None = _text("longer text is cut (2000)")
    loudness_dbfs: str | None = _text("target level (-23)")
    threads: str | None = _text("onnxruntime threads per voice")
    parallel: str | None = _text("pieces synthesized at once (1)")
    warm: str | None = _text("languages to load at start (default: those named in the "
                             "backend table; 'none': load on first use)")
    max_rtf: str | None = _text("per piece, a voice whose running real-time factor here is "
                                "above this passes the piece on (0: no check)")
    target_lag_s: str | None = _text("pacing: the lag behind the speaker aimed at (1.5)")
    pace_horizon_s: str | None = _text("pacing: the horizon of the pace (2)")
    max_speed: str | None = _text("pacing: the fastest pace, 1 = the voice's own (1.5)")
    late_s: str | None = _text("pacing: this late, the fallback voice speaks (6; 0: never)")
    ready_lag_s: str | None = _text("pacing: a segment's first piece is due this long after "
                                    "its source words end (2; 0: no check)")
    gap_s: str | None = _text("pacing: silence tolerated before a later piece is due (0.3)")
