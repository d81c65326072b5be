"""Settings of the TTS worker (``s2st tts``): the ``S2ST_TTS_*`` variables, each with a flag
made from it (bus/command.py). Their values are read and checked by
:meth:`workers.tts.config.TtsConfig.from_env` and :func:`workers.tts.cli.build_stage`, whose
errors name the variable; here they are text, unset (None) meaning that reader's default."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.command import unset_text


class TTSWorkerSettings(BaseSettings):
    """Which voice speaks which language, how pieces are cut, leveled and paced."""

    model_config = SettingsConfigDict(env_prefix="S2ST_TTS_", extra="ignore")

    backends: str | None = unset_text("e.g. es=kokoro,en=piper,*=espeak")
    fallback: str | None = unset_text("default espeak; empty: none")
    first_words: str | None = unset_text("words in a first piece (4)")
    max_words: str | None = unset_text("words in any piece (24)")
    max_chars: str | None = unset_text("longer text is cut (2000)")
    loudness_dbfs: str | None = unset_text("target level (-23)")
    threads: str | None = unset_text("onnxruntime threads per voice")
    parallel: str | None = unset_text("pieces synthesized at once (1)")
    warm: str | None = unset_text("languages to load at start (default: those named in the "
                                   "backend table; 'none': load on first use)")
    max_rtf: str | None = unset_text("per piece, a voice whose running real-time factor here is "
                                      "above this passes the piece on (0: no check)")
    target_lag_s: str | None = unset_text("pacing: the lag behind the speaker aimed at (1.5)")
    pace_horizon_s: str | None = unset_text("pacing: the horizon of the pace (2)")
    max_speed: str | None = unset_text("pacing: the fastest pace, 1 = the voice's own (1.5)")
    late_s: str | None = unset_text("pacing: this late, the fallback voice speaks (6; 0: never)")
    ready_lag_s: str | None = unset_text("pacing: a segment's first piece is due this long after "
                                          "its source words end (2; 0: no check)")
    gap_s: str | None = unset_text("pacing: silence tolerated before a later piece is due (0.3)")
