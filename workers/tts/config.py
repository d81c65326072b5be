"""TTS settings: which backend speaks which language, and how pieces are cut and leveled.

`S2ST_TTS_BACKENDS` maps languages to backends, e.g. "es=kokoro,en=piper,*=espeak"; one
language may name a chain tried in order, "es=edge>kokoro". `*` is every other language.
The fallback (`S2ST_TTS_FALLBACK`, espeak) is appended to every chain.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .audio import OUTPUT_RATE, TARGET_DBFS
from .backends import FACTORIES, base_lang
from .pacing import PaceConfig
from .splitter import SplitPolicy

DEFAULT_BACKENDS = "es=kokoro,en=piper,*=espeak"
DEFAULT_FALLBACK = "espeak"


def parse_backends(spec: str) -> dict[str, tuple[str, ...]]:
    """ "es=kokoro,en=piper,*=espeak" -> {"es": ("kokoro",), "en": ("piper",), "*": ("espeak",)}."""
    table: dict[str, tuple[str, ...]] = {}
    for entry in spec.split(","):
        entry = entry.strip()
        if not entry:
            continue
        lang, sep, chain = entry.partition("=")
        lang = lang.strip().lower().replace("_", "-")
        names = tuple(name.strip().lower() for name in chain.split(">") if name.strip())
        if not sep or not lang or not names:
            raise ValueError(f"bad TTS backend entry {entry!r}: expected LANG=BACKEND[>BACKEND...]")
        unknown = [name for name in names if name not in FACTORIES]
        if unknown:
            raise ValueError(
                f"unknown TTS backend {unknown[0]!r} in {entry!r} (known: {', '.join(FACTORIES)})"
            )
        table[lang] = names
    if not table:
        raise ValueError("TTS backend table is empty")
    return table


@dataclass(frozen=True)
class TtsConfig:
    backends: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: parse_backends(DEFAULT_BACKENDS)
    )
    fallback: str = DEFAULT_FALLBACK
    output_rate: int = OUTPUT_RATE
    target_dbfs: float = TARGET_DBFS
    split: SplitPolicy = field(default_factory=SplitPolicy)
    max_chars: int = 2000  # longer text is cut (and counted): one segment must not stall a room
    sentence_pause_s: float = 0.25
    clause_pause_s: float = 0.12
    retry_unavailable_s: float = 300.0  # a backend that cannot load is skipped this long
    pace: PaceConfig = field(default_factory=PaceConfig)  # keeping up with the speaker
    # per piece: a voice whose running real-time factor here is above this passes the piece
    # to the next voice of its chain (0: no such check; lateness is checked anyway)
    max_rtf: float = 0.0

    def __post_init__(self) -> None:
        if self.fallback and self.fallback not in FACTORIES:
            raise ValueError(f"unknown fallback backend {self.fallback!r}")
        if self.output_rate < 8000:
            raise ValueError(f"output rate {self.output_rate} Hz is too low")
        if self.max_chars < 1:
            raise ValueError("max_chars must be positive")
        if self.max_rtf < 0:
            raise ValueError(f"S2ST_TTS_MAX_RTF must be 0 (off) or positive, not {self.max_rtf}")

    def chain(self, lang: str) -> list[str]:
        """Backends to try for `lang`, in order, the fallback last, no repeats."""
        tag = lang.strip().lower().replace("_", "-")
        configured = (
            self.backends.get(tag)
            or self.backends.get(base_lang(tag))
            or self.backends.get("*", ())
        )
        chain = [*configured, *([self.fallback] if self.fallback else [])]
        return list(dict.fromkeys(chain))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TtsConfig:
        """Settings from S2ST_TTS_* variables; a bad value raises ValueError naming it."""
        env = os.environ if env is None else env
        first_words = _number(env, "S2ST_TTS_FIRST_WORDS", SplitPolicy.first_words, int)
        max_words = _number(env, "S2ST_TTS_MAX_WORDS", SplitPolicy.max_words, int)
        try:
            split = SplitPolicy(first_words=first_words, max_words=max_words)
        except ValueError as exc:
            raise ValueError(f"S2ST_TTS_FIRST_WORDS/S2ST_TTS_MAX_WORDS: {exc}") from None
        try:
            backends = parse_backends(env.get("S2ST_TTS_BACKENDS", DEFAULT_BACKENDS))
        except ValueError as exc:
            raise ValueError(f"S2ST_TTS_BACKENDS: {exc}") from None
        fallback = env.get("S2ST_TTS_FALLBACK", DEFAULT_FALLBACK).strip().lower()
        if fallback and fallback not in FACTORIES:
            raise ValueError(
                f"S2ST_TTS_FALLBACK: unknown backend {fallback!r} (known: {', '.join(FACTORIES)})"
            )
        defaults = PaceConfig()
        try:
            pace = PaceConfig(
                target_lag_s=_number(env, "S2ST_TTS_TARGET_LAG_S", defaults.target_lag_s, float),
                horizon_s=_number(env, "S2ST_TTS_PACE_HORIZON_S", defaults.horizon_s, float),
                max_speed=_number(env, "S2ST_TTS_MAX_SPEED", defaults.max_speed, float),
                late_s=_number(env, "S2ST_TTS_LATE_S", defaults.late_s, float),
                ready_lag_s=_number(env, "S2ST_TTS_READY_LAG_S", defaults.ready_lag_s, float),
                gap_s=_number(env, "S2ST_TTS_GAP_S", defaults.gap_s, float),
            )
        except ValueError as exc:
            raise ValueError("S2ST_TTS_TARGET_LAG_S/PACE_HORIZON_S/MAX_SPEED/LATE_S/"
                             f"READY_LAG_S/GAP_S: {exc}") from None
        return cls(
            backends=backends,
            fallback=fallback,
            target_dbfs=_number(env, "S2ST_TTS_LOUDNESS_DBFS", TARGET_DBFS, float),
            split=split,
            max_chars=_number(env, "S2ST_TTS_MAX_CHARS", 2000, int),
            pace=pace,
            max_rtf=_number(env, "S2ST_TTS_MAX_RTF", 0.0, float),
        )


def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return kind(default)
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a{'n integer' if kind is int else ' number'}, "
                         f"not {raw!r}") from None
