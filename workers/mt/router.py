"""Which backend translates which language pair, with pivoting when no direct pair exists.

Rules map a pair pattern to backend names in order of preference, the most specific pattern
winning: ``en-es`` beats ``en-*`` and ``*-es``, which beat ``*``. The same language on both
sides always goes to the pass-through backend. When no preferred backend translates a pair
directly, the router tries ``src -> pivot -> tgt`` through each pivot language in turn, each
leg chosen by the same rules. The route string says what was used, e.g. ``apertium:en-es`` or
``apertium:fr-es>apertium:es-en``.

A backend that cannot load is passed over (the worker only lets that happen with
``S2ST_MT_MODEL_FALLBACK=on``): a route found without it is a *fallback*, logged at warning
and counted, and :meth:`Router.health` lists it with the backends that could not load and the
pairs with no route at all, for `s2st status`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import langs, metrics
from .backends.base import Translator
from .backends.passthrough import PassthroughTranslator
from .errors import BackendUnavailable, UnsupportedPair

log = logging.getLogger(__name__)

WILDCARD = "*"


@dataclass(frozen=True)
class Rule:
    src: str  # a language code or "*"
    tgt: str
    backends: tuple[str, ...]

    @property
    def specificity(self) -> int:
        return (self.src != WILDCARD) * 2 + (self.tgt != WILDCARD)

    def matches(self, src: str, tgt: str) -> bool:
        return self.src in (WILDCARD, src) and self.tgt in (WILDCARD, tgt)


def parse_rules(spec: str | Mapping[str, str | Sequence[str]]) -> list[Rule]:
    """``"en-es=apertium,fr-*=llm|apertium,*=apertium"`` (or the same as a dict) -> rules.

    ``|`` separates backends tried in order; ``*`` alone means any pair.
    """
    items: list[tuple[str, str | Sequence[str]]]
    if isinstance(spec, str):
        items = []
        for part in spec.split(","):
            if not part.strip():
                continue
            pair_text, sep, names_text = part.partition("=")
            if not sep or not names_text.strip():
                raise ValueError(f"bad MT backend rule {part.strip()!r}: expected PAIR=BACKEND")
            items.append((pair_text, names_text))
    else:
        items = list(spec.items())
    rules: list[Rule] = []
    for raw_pattern, names in items:
        pattern = raw_pattern.strip()
        if pattern == WILDCARD:
            src, tgt = WILDCARD, WILDCARD
        else:
            src, sep, tgt = pattern.partition("-")
            if not sep:
                raise ValueError(f"bad language pair {pattern!r}: expected SRC-TGT, SRC-*, *-TGT or *")
            src = src if src == WILDCARD else langs.normalize(src)
            tgt = tgt if tgt == WILDCARD else langs.normalize(tgt)
        chain = names.split("|") if isinstance(names, str) else list(names)
        backends = tuple(n.strip() for n in chain if n.strip())
        if not backends:
            raise ValueError(f"no backend named for {pattern!r}")
        rules.append(Rule(src, tgt, backends))
    return rules


@dataclass(frozen=True)
class Hop:
    backend: Translator
    src: str
    tgt: str

    def __str__(self) -> str:
        if isinstance(self.backend, PassthroughTranslator):
            return self.backend.name
        return f"{self.backend.name}:{self.src}-{self.tgt}"


@dataclass(frozen=True)
class Route:
    hops: tuple[Hop, ...]
    # backends the rules prefer that were passed over because they could not load
    unavailable: tuple[str, ...] = ()

    @property
    def fast(self) -> bool:
        return all(hop.backend.fast for hop in self.hops)

    @property
    def fallback(self) -> bool:
        return bool(self.unavailable)

    def __str__(self) -> str:
        return ">".join(str(hop) for hop in self.hops)


@dataclass(frozen=True)
class Translation:
    text: str
    route: str
    unavailable: tuple[str, ...] = ()  # a fallback route: the preferred backends passed over


class Router:
    """Chooses and runs the route of each pair; routes are cached per pair.

    ``backends`` maps names to translators; a value may also be a zero-argument factory,
    called on first use (so a large model loads only when a pair needs it).
    """

    def __init__(
        self,
        backends: Mapping[str, Translator | object],
        rules: Sequence[Rule] | str | Mapping[str, str | Sequence[str]] = "*=apertium",
        pivots: Sequence[str] = ("en", "es"),
    ) -> None:
        self._entries = dict(backends)
        self.rules = sorted(
            parse_rules(rules) if isinstance(rules, str | Mapping) else list(rules),
            key=lambda r: -r.specificity,
        )
        self.pivots = tuple(langs.normalize(p) for p in pivots)
        self.passthrough = PassthroughTranslator()
        self._routes: dict[tuple[str, str], Route] = {}
        self._failed: dict[str, BackendUnavailable] = {}  # factories that could not load
        self._no_route: dict[str, str] = {}  # "src-tgt" -> why, for health()
        self._lock = threading.Lock()

    def backend(self, name: str) -> Translator:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                raise BackendUnavailable(f"MT backend {name!r} is not configured")
            if name in self._failed:
                raise self._failed[name]
            if not isinstance(entry, Translator):
                if not callable(entry):
                    raise BackendUnavailable(f"MT backend {name!r} is neither a translator nor a factory")
                try:
                    entry = entry()
                except BackendUnavailable as exc:
                    log.error("MT backend %s cannot load: %s", name, exc)
                    self._failed[name] = exc
                    metrics.BACKEND_UNAVAILABLE.labels(name).set(1)
                    raise
                self._entries[name] = entry
            return entry

    def _candidates(self, src: str, tgt: str) -> tuple[str, ...]:
        for rule in self.rules:
            if rule.matches(src, tgt):
                return rule.backends
        return ()

    def _direct(self, src: str, tgt: str, passed: dict[str, None]) -> Hop | None:
        """The first backend of the pair's rule that loads and has the pair; the ones that
        could not load go into ``passed``."""
        for name in self._candidates(src, tgt):
            try:
                backend = self.backend(name)
            except BackendUnavailable:
                passed[name] = None
                continue
            if backend.supports(src, tgt):
                return Hop(backend, src, tgt)
        return None

    def route(self, src: str, tgt: str) -> Route:
        """The route for a pair; raises :class:`UnsupportedPair` when there is none."""
        src, tgt = langs.normalize(src), langs.normalize(tgt)
        key = (src, tgt)
        cached = self._routes.get(key)
        if cached is not None:
            return cached
        try:
            route = self._find(src, tgt)
        except UnsupportedPair as exc:
            self._no_route[f"{src}-{tgt}"] = str(exc)
            raise
        self._no_route.pop(f"{src}-{tgt}", None)
        if route.fallback and key not in self._routes:
            log.warning("MT pair %s-%s: %s could not load, translated by %s instead", src, tgt,
                        ", ".join(route.unavailable), route)
        self._routes[key] = route
        return route

    def _find(self, src: str, tgt: str) -> Route:
        if src == tgt:
            return Route((Hop(self.passthrough, src, tgt),))
        passed: dict[str, None] = {}  # backends that could not load, in the order met
        direct = self._direct(src, tgt, passed)
        if direct is not None:
            return Route((direct,), tuple(passed))
        for pivot in self.pivots:
            if pivot in (src, tgt):
                continue
            first, second = self._direct(src, pivot, passed), self._direct(pivot, tgt, passed)
            if first is not None and second is not None:
                return Route((first, second), tuple(passed))
        tried = ", ".join(self.pivots) or "none"
        detail = f"no backend for it directly or through pivots ({tried})"
        if passed:
            detail += "; could not load: " + ", ".join(passed)
        raise UnsupportedPair(src, tgt, detail)

    def supports(self, src: str, tgt: str) -> bool:
        try:
            self.route(src, tgt)
        except UnsupportedPair:
            return False
        return True

    def translate(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> Translation:
        """Translate along the pair's route. Only the first leg sees ``context`` (it is in
        the source language)."""
        route = self.route(src, tgt)
        current = text
        for index, hop in enumerate(route.hops):
            current = hop.backend.translate(current, hop.src, hop.tgt, context if index == 0 else ())
        return Translation(text=current, route=str(route), unavailable=route.unavailable)

    def warm(self, src: str, tgt: str) -> Route:
        """Choose the route and run one short text along it, so pipelines are started and
        models loaded before the first real sentence (raises like :meth:`translate`)."""
        route = self.route(src, tgt)
        self.translate("Hello." if langs.normalize(src) == "en" else "a", src, tgt)
        return route

    def unavailable(self) -> dict[str, str]:
        """Backends that could not load, and why."""
        with self._lock:
            return {name: str(exc) for name, exc in self._failed.items()}

    def health(self) -> dict[str, Any]:
        """What is not as configured, as plain data (empty when all is): backends that could
        not load, pairs translated on a fallback route, pairs with no route."""
        out: dict[str, Any] = {}
        unavailable = self.unavailable()
        if unavailable:
            out["unavailable"] = unavailable
        fallbacks = {f"{src}-{tgt}": f"{route}, instead of {', '.join(route.unavailable)}"
                     for (src, tgt), route in list(self._routes.items()) if route.fallback}
        if fallbacks:
            out["fallback"] = fallbacks
        if self._no_route:
            out["no_route"] = dict(self._no_route)
        return out

    def close(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            if isinstance(entry, Translator):
                entry.close()
