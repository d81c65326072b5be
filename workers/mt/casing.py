"""Sentence boundaries and casing of translated spans.

The segmenter releases clauses, and a hold timeout can cut a sentence anywhere, so one
sentence often arrives as several spans, each translated alone. Backends treat every text as
a sentence of its own: Apertium capitalises the first word, a neural model adds a final
period. The engine knows whether the previous span of the session ended its sentence, and
:func:`fit_span` makes the translation agree:

- a span that starts a sentence (the session's first, or the previous one ended with ``.``,
  ``?``, ``!`` or ``…``) starts with a capital;
- a span that continues a sentence starts in lower case when its source does (a source word
  in capitals mid-sentence is a name and keeps the backend's case; so does an acronym);
- the source's sentence-final punctuation is kept, and a final period the backend added to a
  span that does not end its sentence is removed.

:func:`lower_spurious_capitals` undoes capitals that a backend puts in the middle of a text
(Apertium eng-spa capitalises the word after a sentence-initial interjection or unknown word:
"Muchas gracias Para venidero").
"""

from __future__ import annotations

import re
from collections.abc import Collection

SENTENCE_END = ".?!…。？！"
_CLOSERS = "\"'”’»)]"
_OPENERS = "¿¡\"'“‘«(["
_EN_CAPITALS = frozenset(
    "I I'm I'll I've I'd Monday Tuesday Wednesday Thursday Friday Saturday Sunday January "
    "February March April May June July August September October November December English "
    "Spanish Catalan French Portuguese German Italian European American".split()
)


def _english_capital(word: str) -> bool:
    """Capitalised in English wherever it stands: I, days, months, languages, nationalities."""
    return word in _EN_CAPITALS or word.endswith(("ian", "ese", "ish", "ean", "can"))


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends with sentence-final punctuation (closing quotes ignored)."""
    stripped = text.rstrip().rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in SENTENCE_END


def _first_letter(text: str) -> int:
    """Index of the first letter when the text starts with a word (after opening marks);
    -1 when it starts with a number or has no letter."""
    for i, c in enumerate(text):
        if c.isalpha():
            return i
        if not (c.isspace() or c in _OPENERS):
            return -1
    return -1


def _mixed_case(word: str) -> bool:
    """``iPhone``, ``eBay``, ``McDonald``: a spelling to keep at any place."""
    return any(c.isupper() for c in word[1:]) and any(c.islower() for c in word)


def _is_acronym(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return len(letters) > 1 and all(c.isupper() for c in letters)


def fit_span(source: str, target: str, starts_sentence: bool, tgt: str = "") -> str:
    """The translation of one span, cased and punctuated for its place in the sentence."""
    index = _first_letter(target)
    if index >= 0:
        word = target[index:].split(" ", 1)[0]
        src_index = _first_letter(source)
        if _mixed_case(word):
            pass
        elif starts_sentence:
            target = target[:index] + target[index].upper() + target[index + 1:]
        elif (src_index >= 0 and source[src_index].islower() and target[index].isupper()
              and not _is_acronym(word) and not (tgt == "en" and _english_capital(word.rstrip(",.;:")))):
            target = target[:index] + target[index].lower() + target[index + 1:]
    source_end = source.rstrip().rstrip(_CLOSERS)[-1:] if source.strip() else ""
    if source_end and source_end in SENTENCE_END:
        if not ends_sentence(target):
            closers = len(target.rstrip()) - len(target.rstrip().rstrip(_CLOSERS))
            body = target.rstrip()
            cut = len(body) - closers
            target = body[:cut].rstrip(",;: ") + source_end + body[cut:]
    elif source_end:
        body = target.rstrip()
        last = body.split()[-1] if body.split() else ""
        if body.endswith(".") and not body.endswith("..") and not _is_acronym(last) \
                and last.count(".") == 1:
            target = body[:-1]
    return target


_TOKEN = re.compile(r"\S+")


def lower_spurious_capitals(target: str, keep: Collection[str], tgt: str = "") -> str:
    """Lower-case words capitalised in the middle of a sentence, except those in ``keep``
    (the source's capitalised words and their translations), acronyms and, into English,
    ``I``, days, months, languages and nationalities."""
    out: list[str] = []
    previous = ""
    for match in _TOKEN.finditer(target):
        token = match.group(0)
        word = token.lstrip(_OPENERS).rstrip(_CLOSERS + ",.;:?!…")
        if (out and previous and not ends_sentence(previous) and not previous.endswith(":")
                and len(word) > 1 and word[0].isupper() and word[1:].islower()
                and word not in keep and not (tgt == "en" and _english_capital(word))):
            start = token.index(word[0])
            token = token[:start] + token[start].lower() + token[start + 1:]
        out.append(token)
        previous = token
    return " ".join(out)


def capitalised_words(text: str) -> list[str]:
    """Words of ``text`` that start with a capital (names, and sentence starts)."""
    words = (t.lstrip(_OPENERS).rstrip(_CLOSERS + ",.;:?!…") for t in text.split())
    return [w for w in words if w[:1].isupper()]


def mid_sentence_capitals(text: str) -> list[str]:
    """Capitalised words of ``text`` not at the start of a sentence: names, most likely."""
    out: list[str] = []
    tokens = text.split()
    for i, token in enumerate(tokens):
        word = token.lstrip(_OPENERS).rstrip(_CLOSERS + ",.;:?!…")
        if i > 0 and word[:1].isupper() and not ends_sentence(tokens[i - 1]):
            out.append(word)
    return out
