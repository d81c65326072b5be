"""Speech synthesis backends behind one interface (see base.Synthesizer)."""

from __future__ import annotations

from collections.abc import Callable

from .base import Audio, BackendUnavailable, SynthesisError, Synthesizer, base_lang


def _kokoro() -> Synthesizer:
    from .kokoro import KokoroSynthesizer

    return KokoroSynthesizer()


def _piper() -> Synthesizer:
    from .piper import PiperSynthesizer

    return PiperSynthesizer()


def _espeak() -> Synthesizer:
    from .espeak import EspeakSynthesizer

    return EspeakSynthesizer()


def _edge() -> Synthesizer:
    from .edge import EdgeSynthesizer

    return EdgeSynthesizer()


FACTORIES: dict[str, Callable[[], Synthesizer]] = {
    "kokoro": _kokoro,
    "piper": _piper,
    "espeak": _espeak,
    "edge": _edge,
}


def create_backend(name: str) -> Synthesizer:
    """A new (not yet loaded) backend by name: kokoro, piper, espeak or edge."""
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown TTS backend {name!r} (known: {', '.join(FACTORIES)})") from None
    return factory()


__all__ = [
    "FACTORIES",
    "Audio",
    "BackendUnavailable",
    "SynthesisError",
    "Synthesizer",
    "base_lang",
    "create_backend",
]
