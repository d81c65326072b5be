"""MT settings from ``S2ST_MT_*`` environment variables, and building the router from them.

``S2ST_MT_BACKENDS``  pair rules, most specific first wins (default ``*=apertium``), e.g.
                      ``en-es=opus_en_es|apertium,fr-*=mistral,*=apertium``
``S2ST_MT_PIVOTS``    pivot languages tried in order when no backend has a pair (``en,es``)
``S2ST_MT_MODELS``    JSON object naming model backends, e.g.
                      ``{"opus_en_es": {"kind": "seq2seq", "path": "/models/opus-mt-en-es",
                      "pairs": ["en-es"]}, "mistral": {"kind": "llm", "path":
                      "mistralai/Mistral-7B-Instruct-v0.3", "quantize": "4bit"}}``;
                      other keys are passed to the backend's constructor
``S2ST_MT_HOLD_TIMEOUT_S``  how long mid-sentence text is held (1.5)
``S2ST_MT_MIN_CLAUSE_WORDS`` words before a comma counts as a boundary (5)
``S2ST_MT_CONTEXT``   previous sentences given to backends as context (3)
``S2ST_MT_CAPTIONS``  ``auto`` (fast backends only), ``on`` or ``off``
``S2ST_MT_CAPTION_INTERVAL_S`` the least time between two caption translations (0.5)
``S2ST_MT_APERTIUM_TIMEOUT_S`` the longest one Apertium call may take (10)
``S2ST_MT_MODEL_FALLBACK`` ``off`` (default): a model named by a rule that does not load
                      stops the worker at start; ``on``: its pairs use the next backend of
                      their rule (logged, counted, shown by `s2st status`)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from . import langs
from .backends.apertium import ApertiumTranslator
from .backends.base import Translator
from .backends.passthrough import PassthroughTranslator
from .engine import CaptionMode, EngineConfig
from .router import Router, parse_rules

MODEL_KINDS = ("seq2seq", "llm")
N = TypeVar("N", int, float)


@dataclass
class MTSettings:
    backends: str = "*=apertium"
    pivots: tuple[str, ...] = ("en", "es")
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    apertium_timeout_s: float = 10.0
    model_fallback: bool = False  # a model that does not load: stop (False) or fall back
    engine: EngineConfig = field(default_factory=EngineConfig)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MTSettings:
        env = os.environ if env is None else env
        models: dict[str, dict[str, Any]] = {}
        raw_models = env.get("S2ST_MT_MODELS", "").strip()
        if raw_models:
            try:
                models = json.loads(raw_models)
            except json.JSONDecodeError as exc:
                raise ValueError(f"S2ST_MT_MODELS is not valid JSON: {exc}") from exc
            if not isinstance(models, dict):
                raise ValueError("S2ST_MT_MODELS must be a JSON object of name -> model settings")
        captions = env.get("S2ST_MT_CAPTIONS", "auto").strip().lower()
        if captions not in ("auto", "on", "off"):
            raise ValueError(f"S2ST_MT_CAPTIONS must be auto, on or off, not {captions!r}")
        engine = EngineConfig(
            hold_timeout_s=_number(env, "S2ST_MT_HOLD_TIMEOUT_S", 1.5, float, minimum=0.0),
            idle_hold_s=_number(env, "S2ST_MT_IDLE_HOLD_S", 0.5, float, minimum=0.0),
            min_clause_words=_number(env, "S2ST_MT_MIN_CLAUSE_WORDS", 5, int, minimum=1),
            context_sentences=_number(env, "S2ST_MT_CONTEXT", 3, int, minimum=0),
            captions=cast(CaptionMode, captions),
            caption_interval_s=_number(env, "S2ST_MT_CAPTION_INTERVAL_S", 0.5, float, minimum=0.0),
        )
        settings = cls(
            backends=env.get("S2ST_MT_BACKENDS", "*=apertium"),
            pivots=tuple(p.strip() for p in env.get("S2ST_MT_PIVOTS", "en,es").split(",") if p.strip()),
            models=models,
            apertium_timeout_s=_number(env, "S2ST_MT_APERTIUM_TIMEOUT_S", 10.0, float, minimum=0.1),
            model_fallback=_switch(env, "S2ST_MT_MODEL_FALLBACK", False),
            engine=engine,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        rules = parse_rules(self.backends)
        for pivot in self.pivots:
            try:
                langs.normalize(pivot)
            except ValueError as exc:
                raise ValueError(f"S2ST_MT_PIVOTS: {exc}") from None
        known = {"apertium", "passthrough", *self.models}
        for rule in rules:
            for name in rule.backends:
                if name not in known:
                    raise ValueError(
                        f"MT rule {rule.src}-{rule.tgt} names backend {name!r}, which is neither "
                        f"built in (apertium, passthrough) nor in S2ST_MT_MODELS"
                    )
        for name, spec in self.models.items():
            if not isinstance(spec, dict) or spec.get("kind") not in MODEL_KINDS or not spec.get("path"):
                raise ValueError(
                    f"model {name!r} needs 'kind' ({' or '.join(MODEL_KINDS)}) and 'path'"
                )


    def rule_models(self) -> list[str]:
        """The models of S2ST_MT_MODELS that a rule names, in the order the rules name them
        (the worker loads them at start)."""
        names = [n for rule in parse_rules(self.backends) for n in rule.backends if n in self.models]
        return list(dict.fromkeys(names))


_SWITCH = {"on": True, "1": True, "true": True, "yes": True,
           "off": False, "0": False, "false": False, "no": False}


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    """An on/off setting (on, off, 1, 0, true, false, yes, no)."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _SWITCH:
        raise ValueError(f"{name} must be on or off, not {raw!r}")
    return _SWITCH[raw]


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N], *, minimum: N) -> N:
    """A numeric setting, with an error naming the variable when it is not a number or too small."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, not {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {raw!r}")
    return value


def model_factory(name: str, spec: Mapping[str, Any]) -> Callable[[], Translator]:
    """A zero-argument factory loading the model on first use."""
    options = {k: v for k, v in spec.items() if k not in ("kind", "path")}
    kind, path = spec["kind"], spec["path"]

    def load() -> Translator:
        if kind == "seq2seq":
            from .backends.seq2seq import Seq2SeqTranslator

            return Seq2SeqTranslator(path, name=name, **options)
        from .backends.llm import LLMTranslator

        return LLMTranslator(path, name=name, **options)

    return load


def build_router(settings: MTSettings | None = None) -> Router:
    """The router for these settings; model backends load lazily on the first pair using them."""
    settings = settings or MTSettings.from_env()
    backends: dict[str, Translator | Callable[[], Translator]] = {
        "apertium": ApertiumTranslator(timeout_s=settings.apertium_timeout_s),
        "passthrough": PassthroughTranslator(),
    }
    for name, spec in settings.models.items():
        backends[name] = model_factory(name, spec)
    return Router(backends, settings.backends, settings.pivots)
