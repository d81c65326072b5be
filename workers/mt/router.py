"""Which backend translates which language pair, with pivoting when no direct pair exists.

Rules map a pair pattern to backend names in order of preference, the most specific pattern
winning: ``en-es`` beats ``en-*`` and ``*-es``, which beat ``*``. The same language on both
sides always goes to the pass-through backend. When no preferred backend translates a pair
directly, the router tries ``src -> pivot -> tgt`` through each pivot language in turn, each
leg chosen by the same rules. The route string says what was used, e.g. ``apertium:en-es`` or
``apertium:fr-es>apertium:es-en``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import langs
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

    @property
    def fast(self) -> bool:
        return all(hop.backend.fast for hop in self.hops)

    def __str__(self) -> str:
        return ">".join(str(hop) for hop in self.hops)


@dataclass(frozen=True)
class Translation:
    text: str
    route: str


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
                    raise
                self._entries[name] = entry
            return entry

    def _candidates(self, src: str, tgt: str) -> tuple[str, ...]:
        for rule in self.rules:
            if rule.matches(src, tgt):
                return rule.backends
        return ()

    def _direct(self, src: str, tgt: str) -> Hop | None:
        for name in self._candidates(src, tgt):
            try:
                backend = self.backend(name)
            except BackendUnavailable:
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
        route = self._find(src, tgt)
        self._routes[key] = route
        return route

    def _find(self, src: str, tgt: str) -> Route:
        if src == tgt:
            return Route((Hop(self.passthrough, src, tgt),))
        direct = self._direct(src, tgt)
        if direct is not None:
            return Route((direct,))
        for pivot in self.pivots:
            if pivot in (src, tgt):
                continue
            first, second = self._direct(src, pivot), self._direct(pivot, tgt)
            if first is not None and second is not None:
                return Route((first, second))
        tried = ", ".join(self.pivots) or "none"
        raise UnsupportedPair(src, tgt, f"no backend for it directly or through pivots ({tried})")

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
        return Translation(text=current, route=str(route))

    def warm(self, src: str, tgt: str) -> Route:
        """Choose the route and run one short text along it, so pipelines are started and
        models loaded before the first real sentence (raises like :meth:`translate`)."""
        route = self.route(src, tgt)
        self.translate("Hello." if langs.normalize(src) == "en" else "a", src, tgt)
        return route

    def close(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            if isinstance(entry, Translator):
                entry.close()
