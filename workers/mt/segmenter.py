"""Streaming segmentation: translate committed transcript text a clause at a time.

The ASR commits text in pieces that often end mid-sentence ("we will meet at the"); a
rule-based or neural translator given such a piece produces word salad and cannot take it
back. So committed pieces are held until the held text reaches a clause boundary, and then
everything up to the last boundary is released as one span:

- a strong boundary (``.``, ``?``, ``!``, ``;``, ``…`` at the end of a word, not an
  abbreviation such as "Mr." or a single initial) releases at once;
- a weak boundary (``,`` or ``:``) releases only once the text before it has at least
  ``min_clause_words`` words, so "Well," or "So," do not become spans of their own;
- the last commit of an utterance (``final``), a new utterance or language, ``flush()`` and
  more than ``max_words`` held release everything held;
- ``poll(now)`` releases held text that has waited long enough since it arrived, so a speaker
  who stops mid-sentence is still translated. How long depends on the listener: while the
  speech of the spans already released is still being heard (estimated as a quarter more
  than their source duration, from their release on), holding costs the listener nothing,
  so text waits up to ``hold_timeout_s`` for a boundary; once the listener has nothing left
  to hear (the start of a session, after a pause, after a short span), every held second is
  a second of silence for them, so text waits only ``idle_hold_s``.

A span keeps the first and last source seq, the sample range and the capture times of the
pieces it merged. When a boundary falls inside a piece, the piece is split and its sample range
and capture times are divided in proportion to the characters on each side; ``resume`` then says
where the held text starts (the seq and the character offset into that seq's text), which is
what a worker taking over the session needs to rebuild the held text from the stream.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

STRONG = ".?!;…。？！"
WEAK = ",:，"
SPEECH_PER_SOURCE_S = 1.25  # seconds of translated speech per second of source, about
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e u.s u.k a.m p.m no fig approx dept est "
    "sra srta dra ud uds pág núm etc mme mlle".split()
)
_TOKEN_END = re.compile(r"(\S+?)([.?!;…。？！,:，]+)([\"'”’»)\]]*)(?=\s|$)")


@dataclass(frozen=True)
class Piece:
    """One committed transcript event, as the segmenter needs it."""

    seq: int
    text: str
    lang: str
    utterance: str
    sample_start: int
    sample_end: int
    capture_start: float
    capture_end: float
    final: bool = False


@dataclass(frozen=True)
class Span:
    """Text released for translation, with the provenance of what it merged."""

    text: str
    lang: str
    utterance: str
    first_seq: int
    last_seq: int
    sample_start: int
    sample_end: int
    capture_start: float
    capture_end: float
    reason: str  # "boundary", "final", "timeout", "flush", "length", "switch"
    resume_seq: int  # where the text still held after this span starts ...
    resume_offset: int  # ... as (seq, character offset into that seq's text)


@dataclass
class _Held:
    piece: Piece
    start: int  # character offset of the held part within piece.text


def _split_fraction(piece: Piece, start: int, end: int) -> tuple[int, int, float, float]:
    """Sample range and capture times of ``piece.text[start:end]``, by character share."""
    total = max(len(piece.text), 1)
    a, b = start / total, end / total
    samples = piece.sample_end - piece.sample_start
    seconds = piece.capture_end - piece.capture_start
    return (
        piece.sample_start + round(samples * a),
        piece.sample_start + round(samples * b),
        piece.capture_start + seconds * a,
        piece.capture_start + seconds * b,
    )


class ClauseSegmenter:
    def __init__(
        self,
        hold_timeout_s: float = 1.5,
        min_clause_words: int = 5,
        max_words: int = 40,
        idle_hold_s: float | None = None,
    ) -> None:
        self.hold_timeout_s = hold_timeout_s
        # None: always hold_timeout_s (the listener is not taken into account)
        self.idle_hold_s = hold_timeout_s if idle_hold_s is None else min(idle_hold_s,
                                                                          hold_timeout_s)
        self._heard_until = -math.inf  # when the listener will have heard what was released
        self.min_clause_words = min_clause_words
        self.max_words = max_words
        self._held: list[_Held] = []
        self._held_since: float | None = None
        self._skip: tuple[int, int] | None = None  # (seq, offset) when resuming a session
        self._next_seq = 0  # the seq after the last piece pushed

    # --- state -------------------------------------------------------------------------

    @property
    def held_text(self) -> str:
        return " ".join(" ".join(h.piece.text[h.start:].split()) for h in self._held).strip()

    @property
    def held_since(self) -> float | None:
        return self._held_since

    @property
    def resume_point(self) -> tuple[int, int]:
        """(seq, character offset) where the untranslated text starts."""
        if self._held:
            return self._held[0].piece.seq, self._held[0].start
        return self._next_seq, 0

    def resume_from(self, seq: int, offset: int = 0) -> None:
        """Before re-feeding a session from the stream: ignore pieces before ``seq`` and the
        first ``offset`` characters of piece ``seq`` (they were translated already)."""
        self._skip = (seq, offset)

    # --- input -------------------------------------------------------------------------

    def push(self, piece: Piece, now: float) -> list[Span]:
        """A committed piece; returns the spans it completed. Seqs must increase: a piece whose
        seq is not above the last one pushed is a redelivery and is ignored."""
        if piece.seq < self._next_seq:
            return []
        start = 0
        if self._skip is not None:
            skip_seq, skip_offset = self._skip
            if piece.seq < skip_seq:
                self._next_seq = max(self._next_seq, piece.seq + 1)
                return []
            if piece.seq == skip_seq:
                start = min(skip_offset, len(piece.text))
            self._skip = None
        released: list[Span] = []
        if self._held and (
            self._held[-1].piece.utterance != piece.utterance
            or self._held[-1].piece.lang != piece.lang
        ):
            # released before this piece is taken, so its resume point is this piece
            released += self._release_all("switch")
        self._next_seq = max(self._next_seq, piece.seq + 1)
        if not piece.text[start:].strip():
            if piece.final:
                released += self._release_all("final")
            return self._heard(released, now)
        if not self._held:
            self._held_since = now
        self._held.append(_Held(piece, start))
        if piece.final:
            released += self._release_all("final")
            return self._heard(released, now)
        released += self._release_at_boundary(now)
        if len(self.held_text.split()) > self.max_words:
            released += self._release_all("length")
        return self._heard(released, now)

    def poll(self, now: float) -> list[Span]:
        """Release held text that has waited long enough (see the module docstring)."""
        deadline = self.hold_deadline
        if deadline is not None and now >= deadline:
            return self._heard(self._release_all("timeout"), now)
        return []

    @property
    def hold_deadline(self) -> float | None:
        """When ``poll`` releases the held text if no boundary comes first."""
        if not self._held or self._held_since is None:
            return None
        busy = self._heard_until - self._held_since
        return self._held_since + max(self.idle_hold_s, min(self.hold_timeout_s, busy))

    def _heard(self, spans: list[Span], now: float) -> list[Span]:
        """The listener will hear each released span for a little longer than it was spoken
        (a translation is often longer than its source, and the voice pauses after clauses)."""
        for span in spans:
            self._heard_until = (max(self._heard_until, now) + SPEECH_PER_SOURCE_S
                                 * max(0.0, span.capture_end - span.capture_start))
        return spans

    def flush(self) -> list[Span]:
        """End of stream (or of an utterance the ASR never marked final): release all."""
        return self._release_all("flush")

    # --- boundaries ----------------------------------------------------------------------

    def _last_boundary(self) -> tuple[int, int] | None:
        """(held index, end offset in that piece's text) of the last usable boundary."""
        words_before = 0
        best: tuple[int, int] | None = None
        for index, held in enumerate(self._held):
            text = held.piece.text
            for match in _TOKEN_END.finditer(text, held.start):
                word, punct = match.group(1), match.group(2)
                words_before_here = words_before + len(text[held.start:match.start(2)].split())
                if any(p in STRONG for p in punct):
                    if "." in punct and not any(p in "?!;…" for p in punct) and _abbreviation(word):
                        continue
                    best = (index, match.end())
                elif words_before_here >= self.min_clause_words:
                    best = (index, match.end())
            words_before += len(text[held.start:].split())
        return best

    def _release_at_boundary(self, now: float) -> list[Span]:
        boundary = self._last_boundary()
        if boundary is None:
            return []
        index, end = boundary
        last = self._held[index].piece
        span = self._make_span(self._held[: index + 1], end, "boundary")
        rest = [_Held(last, end)] if last.text[end:].strip() else []
        self._held = rest + self._held[index + 1 :]
        # What is still held arrived with the latest piece: its wait starts now.
        self._held_since = now if self._held else None
        return [self._with_resume(span)]

    def _release_all(self, reason: str) -> list[Span]:
        if not self._held:
            self._held_since = None
            return []
        held = self._held
        self._held = []
        self._held_since = None
        return [self._with_resume(self._make_span(held, len(held[-1].piece.text), reason))]

    def _with_resume(self, span: Span) -> Span:
        if self._held:
            first = self._held[0]
            return replace(span, resume_seq=first.piece.seq, resume_offset=first.start)
        return replace(span, resume_seq=max(self._next_seq, span.last_seq + 1), resume_offset=0)

    @staticmethod
    def _make_span(held: list[_Held], last_end: int, reason: str) -> Span:
        parts: list[str] = []
        first, last = held[0], held[-1]
        for i, h in enumerate(held):
            end = last_end if i == len(held) - 1 else len(h.piece.text)
            parts.append(" ".join(h.piece.text[h.start:end].split()))
        s_start, _, c_start, _ = _split_fraction(first.piece, first.start, len(first.piece.text))
        _, s_end, _, c_end = _split_fraction(last.piece, last.start, last_end)
        return Span(
            text=" ".join(p for p in parts if p),
            lang=first.piece.lang,
            utterance=first.piece.utterance,
            first_seq=first.piece.seq,
            last_seq=last.piece.seq,
            sample_start=s_start,
            sample_end=s_end,
            capture_start=c_start,
            capture_end=c_end,
            reason=reason,
            resume_seq=last.piece.seq + 1,
            resume_offset=0,
        )


def _abbreviation(word: str) -> bool:
    bare = word.lower().lstrip("(\"'¿¡«“‘")
    if len(bare) == 1 and bare.isalpha():
        return True  # an initial: "J. Smith"
    return bare in ABBREVIATIONS or bare.rstrip(".") in ABBREVIATIONS
