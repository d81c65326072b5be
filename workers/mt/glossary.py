"""Per-room glossaries: terms that must come out of translation in a fixed form.

An operator sets them per room and target language (``s2st room glossary conf1 es --set
"earnings call=conferencia de resultados" --set Kubernetes``). They live in one Redis hash per
room and language, owned by the MT stage: ``P:{room}:mt:glossary:<lang>``, source term ->
target term (a term given without ``=`` is kept as it is). The term is matched in the source
text whatever its case, on word boundaries, longest first; see :mod:`workers.mt.protect` for
how it is carried through a backend.

The worker reads the hashes of its rooms at most every ``refresh_s`` seconds
(:class:`GlossaryCache`), not per piece.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bus.ids import check_lang
from bus.keys import Keys
from bus.text import as_text

from . import langs

log = logging.getLogger(__name__)

MAX_TERM_CHARS = 200
MAX_TERM_WORDS = 12
MAX_TERMS = 2000


class GlossaryError(ValueError):
    """A glossary entry that cannot be used (empty, malformed, too long)."""


def _clean(text: str, what: str, spec: str) -> str:
    if any(ord(c) < 32 for c in text):
        raise GlossaryError(f"glossary entry {spec!r}: the {what} holds a control character")
    words = text.split()
    if not words:
        raise GlossaryError(f"glossary entry {spec!r}: the {what} is empty")
    if len(text) > MAX_TERM_CHARS or len(words) > MAX_TERM_WORDS:
        raise GlossaryError(f"glossary entry {spec!r}: the {what} is over {MAX_TERM_WORDS} words "
                            f"or {MAX_TERM_CHARS} characters")
    if not any(c.isalnum() for c in text):
        raise GlossaryError(f"glossary entry {spec!r}: the {what} has no letter or digit")
    return " ".join(words)


def parse_entry(spec: str) -> tuple[str, str]:
    """``"earnings call=conferencia de resultados"`` -> (source term, target term);
    ``"Kubernetes"`` -> ("Kubernetes", "Kubernetes"). Raises :class:`GlossaryError`."""
    if not isinstance(spec, str) or not spec.strip():
        raise GlossaryError("empty glossary entry: expected TERM or TERM=TRANSLATION")
    if spec.count("=") > 1:
        raise GlossaryError(f"glossary entry {spec!r}: more than one '=' (expected "
                            "TERM=TRANSLATION)")
    source, sep, target = spec.partition("=")
    term = _clean(source, "term", spec)
    return term, _clean(target, "translation", spec) if sep else term


def check_term(term: str) -> str:
    """A term to remove or look up, cleaned the way :func:`parse_entry` cleans it."""
    return _clean(term, "term", term)


def glossary_key(keys: Keys, room: str, lang: str) -> str:
    """``s2st:{conf1}:mt:glossary:es``: in the room's hash slot, owned by the MT stage."""
    return f"{keys.room(room)}:mt:glossary:{check_lang(langs.normalize(lang))}"


async def set_terms(redis: Any, keys: Keys, room: str, lang: str, specs: Iterable[str]) -> dict[str, str]:
    """Add or replace entries (all checked before any is written); returns what was set."""
    entries = dict(parse_entry(spec) for spec in specs)
    if entries:
        key = glossary_key(keys, room, lang)
        existing = {k.casefold() for k in await list_terms(redis, keys, room, lang)}
        if len(existing | {k.casefold() for k in entries}) > MAX_TERMS:
            raise GlossaryError(f"a glossary holds at most {MAX_TERMS} terms")
        # one entry per term whatever its case: the newest spelling wins
        stale = [k for k in await redis.hkeys(key) if as_text(k, "replace").casefold()
                 in {t.casefold() for t in entries} and as_text(k, "replace") not in entries]
        if stale:
            await redis.hdel(key, *stale)
        await redis.hset(key, mapping=entries)
    return entries


async def remove_terms(redis: Any, keys: Keys, room: str, lang: str, terms: Iterable[str]) -> int:
    """Remove entries by term (any case); returns how many were removed."""
    wanted = {check_term(t).casefold() for t in terms}
    key = glossary_key(keys, room, lang)
    found = [k for k in await redis.hkeys(key) if as_text(k, "replace").casefold() in wanted]
    return int(await redis.hdel(key, *found)) if found else 0


async def list_terms(redis: Any, keys: Keys, room: str, lang: str) -> dict[str, str]:
    """The room's glossary into ``lang``; entries that do not parse (written by hand) are
    skipped with a warning."""
    raw = await redis.hgetall(glossary_key(keys, room, lang))
    return _valid_entries(raw, glossary_key(keys, room, lang))


def _valid_entries(raw: Mapping[Any, Any], key: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in sorted((as_text(k, "replace"), as_text(v, "replace")) for k, v in raw.items()):
        try:
            out[check_term(k)] = _clean(v, "translation", f"{k}={v}")
        except GlossaryError as exc:
            log.warning("glossary %s: entry skipped: %s", key, exc)
    return out


@dataclass
class GlossaryCache:
    """The glossaries of the rooms a worker serves, re-read at most every ``refresh_s``."""

    refresh_s: float = 2.0
    _rooms: dict[str, tuple[float, tuple[str, ...], dict[str, dict[str, str]]]] = field(
        default_factory=dict)

    async def get(self, redis: Any, keys: Keys, room: str, targets: Iterable[str],
                  now: float | None = None) -> dict[str, dict[str, str]]:
        """Target language (normalized) -> {term: translation} for ``room``."""
        now = time.monotonic() if now is None else now
        wanted = tuple(sorted({langs.normalize(t) for t in targets}))
        cached = self._rooms.get(room)
        if cached is not None and cached[1] == wanted and now - cached[0] < self.refresh_s:
            return cached[2]
        found: dict[str, dict[str, str]] = {}
        try:
            pipe = redis.pipeline(transaction=False)
            lang_keys = [glossary_key(keys, room, lang) for lang in wanted]
            for key in lang_keys:
                pipe.hgetall(key)
            for lang, key, raw in zip(wanted, lang_keys, await pipe.execute(), strict=True):
                if raw:
                    found[lang] = _valid_entries(raw, key)
        except Exception as exc:  # keep the last glossary: a Redis hiccup is no reason to drop it
            log.warning("glossary of room %s not refreshed: %s", room, exc)
            if cached is not None:
                return cached[2]
        self._rooms[room] = (now, wanted, found)
        return found
