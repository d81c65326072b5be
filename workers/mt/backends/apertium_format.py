"""Plain text <-> Apertium stream format, for one line of speech transcript.

This does in Python what ``apertium-destxt`` / ``apertium-retxt`` do for the ``txt`` format,
because those two tools read their whole input before writing and so cannot sit in a warm,
null-flushed pipeline. A transcript is one line: whitespace runs become one space, the stream
format's reserved characters are escaped with a backslash, and on the way back escapes are
undone, superblanks ``[...]`` are opened and the unknown-word marks are removed:
``*word`` (not in the source dictionary), ``@word`` (no bilingual entry), ``#word`` (the
target generator failed; the lemma is shown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Characters with a meaning in the Apertium stream format.
_RESERVED = frozenset("\\[]^$/@<>{}")
_MARKS = frozenset("*#@")


def deformat(text: str) -> str:
    """One transcript line -> the Apertium stream format (without the NUL terminator)."""
    # NUL ends a block in the null-flush protocol; no control character belongs in a transcript
    cleaned = "".join(" " if ch == "~" or (ord(ch) < 32 and ch not in "\t\n\r") else ch for ch in text)
    line = " ".join(cleaned.split())
    return "".join("\\" + ch if ch in _RESERVED else ch for ch in line)


@dataclass(frozen=True)
class Reformatted:
    text: str
    unknown_words: tuple[str, ...]


_SPACE_BEFORE = re.compile(r"(?<=\w) ([,;:.!?)](?=\s|$))")
_WORD = re.compile(r"[^\s.,;:!?)\]}\"'»”’]+")


def reformat(stream: str) -> Reformatted:
    """Apertium stream output -> readable text, with the marked (unknown) words listed."""
    out: list[str] = []
    unknown: list[str] = []
    i = 0
    n = len(stream)
    while i < n:
        ch = stream[i]
        if ch == "\\" and i + 1 < n:
            out.append(stream[i + 1])
            i += 2
            continue
        if ch in "[]":  # superblank delimiters: keep what they hold, drop the brackets
            i += 1
            continue
        if ch in _MARKS and (not out or not out[-1].isalnum()):
            match = _WORD.match(stream, i + 1)
            if match is not None:
                unknown.append(match.group(0))
                i += 1  # drop the mark, keep the word
                continue
        out.append(ch)
        i += 1
    text = _SPACE_BEFORE.sub(r"\1", " ".join("".join(out).split()))
    return Reformatted(text=text, unknown_words=tuple(unknown))


def match_initial_case(source: str, text: str) -> str:
    """Give the translation's first letter the case of the source's first letter.

    Some Apertium pairs capitalise every text they are given (eng-spa, spa-eng) and some do
    not (eng-cat); a span that continues a sentence ("and then we go home.") must not start
    with a capital. A first word in capitals throughout (an acronym) is left alone.
    """
    src_first = next((c for c in source if c.isalpha()), "")
    index = next((i for i, c in enumerate(text) if c.isalpha()), -1)
    if not src_first or index < 0:
        return text
    word = text[index:].split(" ", 1)[0]
    if src_first.islower() and text[index].isupper() and not (len(word) > 1 and word.isupper()):
        return text[:index] + text[index].lower() + text[index + 1:]
    if src_first.isupper() and text[index].islower():
        return text[:index] + text[index].upper() + text[index + 1:]
    return text
