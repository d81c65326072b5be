"""What every speech synthesizer offers the engine, and the errors it may raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


class SynthesisError(RuntimeError):
    """A backend could not turn this text into speech (the engine falls back)."""


class BackendUnavailable(SynthesisError):
    """A backend cannot run on this host at all: a missing package, model or program."""


@dataclass(frozen=True)
class Audio:
    """Mono audio: float32 samples in [-1, 1] (or int16) at `rate` samples per second."""

    pcm: npt.NDArray[np.float32] | npt.NDArray[np.int16]
    rate: int

    @property
    def samples(self) -> int:
        return int(self.pcm.shape[0])

    @property
    def duration(self) -> float:
        return self.samples / self.rate if self.rate else 0.0


@runtime_checkable
class Synthesizer(Protocol):
    """One text-to-speech backend. Implementations load their model lazily, once."""

    name: str

    def supports(self, lang: str) -> bool:
        """True when this backend can speak the language (ISO 639-1 code, e.g. "es")."""
        ...

    def voices(self, lang: str) -> list[str]:
        """The voices usable for `lang`, default first; empty when unsupported."""
        ...

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        """Speak `text`, `speed` times the voice's own pace (1 = as trained); raise
        SynthesisError (or BackendUnavailable) on failure."""
        ...


def base_lang(lang: str) -> str:
    """Reduce a language tag to its primary subtag: "es-ES" -> "es", "EN_us" -> "en"."""
    tag = lang.strip().replace("_", "-").lower()
    if not tag:
        raise ValueError("language code is empty")
    return tag.split("-", 1)[0]
