"""Text clean-up before synthesis: keep what a voice can read, drop what it cannot."""

from __future__ import annotations

import re
import unicodedata

# Unicode categories no voice can say: symbols and emoji (So), format and private-use
# characters, unassigned code points and lone surrogates. Control characters become spaces.
DROPPED_CATEGORIES = frozenset({"So", "Cf", "Co", "Cn", "Cs"})
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """NFC-normalized text without unspeakable characters; "" when nothing readable is left."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    out: list[str] = []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if category == "Cc":
            out.append(" ")
        elif category not in DROPPED_CATEGORIES:
            out.append(char)
    cleaned = _SPACES.sub(" ", "".join(out)).strip()
    if not any(char.isalnum() for char in cleaned):
        return ""
    return cleaned


def truncate_words(text: str, max_chars: int) -> str:
    """At most `max_chars` characters, cut at a word boundary where there is one."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    space = head.rfind(" ")
    return head[:space] if space > max_chars // 2 else head
