"""Text normalization for word error rates and word comparisons.

Lowercase, Unicode NFKC, punctuation removed (apostrophes inside words kept), hyphens and
dashes turned into spaces, whitespace collapsed. Used both for WER against references and
for LocalAgreement, so that "Hello," and "hello" count as the same word.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_DASHES = re.compile(r"[\-‐‑‒–—―_/]+")
_NOT_WORD = re.compile(r"[^\w\s']+")
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'|'(?!\w)")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("’", "'").replace("‘", "'")
    text = _DASHES.sub(" ", text)
    text = _NOT_WORD.sub(" ", text)
    text = _EDGE_APOSTROPHES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def normalize_word(word: str) -> str:
    return normalize_text(word).replace(" ", "")


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER (total edits / total reference words) on normalized text, with jiwer."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError("references and hypotheses differ in length")
    pairs = [
        (normalize_text(r), normalize_text(h)) for r, h in zip(references, hypotheses, strict=True)
    ]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("no non-empty reference")
    refs, hyps = zip(*pairs, strict=True)
    return float(jiwer.wer(list(refs), list(hyps)))
