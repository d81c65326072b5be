"""What must come out of a backend unchanged: glossary terms and numbers.

Before translation, :func:`protect` replaces

- each glossary term (any case, whole words, longest first) with a token no dictionary knows
  (``Zgx0``, ``Zgx1``...): Apertium copies an unknown word through unchanged, in every pair
  installed here, and it stays a word, so the rules around it still apply;
- each number written with separators (``1,500``, ``3.5``, ``2,000,000.25`` in English;
  ``1.500``, ``3,5`` in Spanish, Catalan, French, Portuguese...) with a plain integer
  placeholder (``904001``...): Apertium passes integers through as numbers (``<num>``), but
  splits ``2,000,000.25`` and spaces ``1,500 dólares ,``. Plain integers (``25``, ``2026``)
  are left to the backend, which keeps them and needs them for dates;
- (English source) a date written month first, ``March 3rd`` or ``March 3, 2026``, with the
  day first (``3 March 2026``), the order the Apertium rules turn into ``3 de marzo de 2026``.

:func:`restore` puts the glossary's target terms and the numbers back, the numbers written
with the target language's decimal mark and thousands separator (``1,500.5`` -> ``1.500,5``
into Spanish, and back). When a placeholder does not come back, it returns None and the caller
translates the text unprotected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import langs

# languages writing 3,5 (decimal comma) and 1.500 (thousands point); others write 3.5 / 1,500
DECIMAL_COMMA = frozenset("es ca fr pt de it gl eu nl ro ru uk pl tr sv da fi el cs oc".split())

_MONTHS = ("january february march april may june july august september october november "
           "december").split()
_MONTH_RE = "|".join([m.capitalize() for m in _MONTHS] + [m[:3].capitalize() + r"\." for m in _MONTHS
                                                           if len(m) > 4])
_DATE_MONTH_FIRST = re.compile(rf"\b({_MONTH_RE})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}})\b)?")
_DATE_OF = re.compile(rf"\b(?:the\s+)?(\d{{1,2}})(?:st|nd|rd|th)\s+of\s+({_MONTH_RE})\b")
_ABBREV = {m[:3].capitalize() + ".": m.capitalize() for m in _MONTHS}

_POINT_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+)(?![\w]|[.,]\d)")
_COMMA_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+,\d+)(?![\w]|[.,]\d)")
_TERM_TOKEN = "Zgx"
_NUMBER_BASE = 904000


@dataclass
class Protected:
    """The text to translate and what its placeholders stand for."""

    text: str
    slots: dict[str, str] = field(default_factory=dict)  # placeholder -> text in the target


def _comma_decimal(lang: str) -> bool:
    return langs.normalize(lang) in DECIMAL_COMMA


def localize_number(number: str, src: str, tgt: str) -> str:
    """``1,500.25`` (en) -> ``1.500,25`` (es); unchanged when both write numbers alike."""
    src_comma, tgt_comma = _comma_decimal(src), _comma_decimal(tgt)
    if src_comma == tgt_comma:
        return number
    group, decimal = (".", ",") if src_comma else (",", ".")
    whole, _, frac = number.partition(decimal)
    digits = whole.replace(group, "")
    grouped = group in whole
    out_group, out_decimal = (".", ",") if tgt_comma else (",", ".")
    if grouped:
        parts: list[str] = []
        while len(digits) > 3:
            parts.insert(0, digits[-3:])
            digits = digits[:-3]
        whole = out_group.join([digits, *parts])
    else:
        whole = digits
    return whole + (out_decimal + frac if frac else "")


def reorder_dates(text: str) -> str:
    """English month-first dates -> day first: ``March 3rd, 2026`` -> ``3 March 2026``."""

    def month(name: str) -> str:
        return _ABBREV.get(name, name)

    def first(m: re.Match[str]) -> str:
        year = f" {m.group(3)}" if m.group(3) else ""
        return f"{m.group(2)} {month(m.group(1))}{year}"

    text = _DATE_MONTH_FIRST.sub(first, text)
    return _DATE_OF.sub(lambda m: f"{m.group(1)} {month(m.group(2))}", text)


def _term_pattern(terms: Mapping[str, str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alternatives = sorted((re.escape(t).replace(r"\ ", r"\s+") for t in terms), key=len,
                          reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def protect(text: str, src: str, tgt: str, terms: Mapping[str, str] | None = None) -> Protected:
    """Placeholders for glossary ``terms`` (source term -> target term) and for numbers."""
    out = Protected(text)
    if terms:
        by_fold = {" ".join(k.split()).casefold(): v for k, v in terms.items()}
        pattern = _term_pattern(terms)
        assert pattern is not None
        taken = {m.casefold() for m in re.findall(r"\w+", text)}

        def term(m: re.Match[str]) -> str:
            token = f"{_TERM_TOKEN}{len(out.slots)}"
            while token.casefold() in taken:
                token += "q"
            out.slots[token] = by_fold[" ".join(m.group(0).split()).casefold()]
            return token

        out.text = pattern.sub(term, out.text)
    if langs.normalize(src) == "en" and langs.normalize(tgt) != "en":
        out.text = reorder_dates(out.text)
    numbers = _COMMA_NUMBER if _comma_decimal(src) else _POINT_NUMBER
    base = _NUMBER_BASE
    while str(base)[:4] in out.text:
        base += 10_000

    def number(m: re.Match[str]) -> str:
        token = str(base + len(out.slots))
        out.slots[token] = localize_number(m.group(0), src, tgt)
        return token

    out.text = numbers.sub(number, out.text)
    return out


def restore(text: str, protected: Protected) -> str | None:
    """The translation with the placeholders replaced; None if one of them is missing."""
    if not protected.slots:
        return text
    found: set[str] = set()

    def put(m: re.Match[str]) -> str:
        key = next((k for k in protected.slots if k.casefold() == m.group(0).casefold()), None)
        if key is None:
            return m.group(0)
        found.add(key)
        return protected.slots[key]

    keys = "|".join(re.escape(k) for k in sorted(protected.slots, key=len, reverse=True))
    result = re.sub(rf"(?<!\w)(?:{keys})(?!\w)", put, text, flags=re.IGNORECASE)
    return result if found == set(protected.slots) else None
