"""Where each sample of an utterance came from: session sample offsets and capture wall times.

The recognizer keeps an utterance's audio as one contiguous array (utterance coordinates:
samples counted from the utterance's first sample). Chunks carry session sample offsets and
capture wall-clock times, and offsets may jump (the capture side drops audio). A
:class:`Timeline` maps utterance positions back to both, so each transcript can say exactly
which source audio it covers and when those words were spoken.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from .decoder import SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Span:
    position: int  # utterance coordinate of the first sample
    offset: int  # session sample offset of the first sample
    length: int
    capture_start: float  # wall clock (epoch s) of the first sample
    capture_end: float  # wall clock of the last sample

    def capture_time(self, i: int) -> float:
        if self.length <= 1 or self.capture_end <= self.capture_start:
            return self.capture_start + i / SAMPLE_RATE
        return self.capture_start + (self.capture_end - self.capture_start) * i / (self.length - 1)


class Timeline:
    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._starts: list[int] = []

    def __len__(self) -> int:
        """Samples covered (utterance coordinates)."""
        if not self._spans:
            return 0
        last = self._spans[-1]
        return last.position + last.length

    @property
    def next_offset(self) -> int | None:
        """Session offset right after the last sample, or None when empty."""
        if not self._spans:
            return None
        last = self._spans[-1]
        return last.offset + last.length

    def append(self, offset: int, length: int, capture_start: float, capture_end: float) -> None:
        if length <= 0:
            return
        position = len(self)
        last = self._spans[-1] if self._spans else None
        if (
            last is not None
            and last.offset + last.length == offset
            and abs(last.capture_time(last.length - 1) + 1 / SAMPLE_RATE - capture_start) < 0.05
        ):
            # contiguous in both sample and wall time: extend the span (keeps the list short)
            self._spans[-1] = Span(
                last.position, last.offset, last.length + length, last.capture_start, capture_end
            )
            return
        self._spans.append(Span(position, offset, length, capture_start, capture_end))
        self._starts.append(position)

    def _span(self, position: int) -> tuple[Span, int]:
        if not self._spans:
            raise LookupError("empty timeline")
        position = min(max(0, position), len(self) - 1)
        k = bisect.bisect_right(self._starts, position) - 1
        span = self._spans[max(0, k)]
        return span, position - span.position

    def offset_at(self, position: int) -> int:
        """Session sample offset of an utterance position (clamped; end is exclusive)."""
        if position >= len(self) and self._spans:
            last = self._spans[-1]
            return last.offset + last.length
        span, i = self._span(position)
        return span.offset + i

    def capture_time_at(self, position: int) -> float:
        if position >= len(self) and self._spans:
            last = self._spans[-1]
            return last.capture_end
        span, i = self._span(position)
        return span.capture_time(i)

    def position_of(self, offset: int) -> int | None:
        """Utterance position of a session offset, or None when not covered (yet)."""
        for span in self._spans:
            if span.offset <= offset < span.offset + span.length:
                return span.position + offset - span.offset
        if self._spans and offset == self._spans[-1].offset + self._spans[-1].length:
            return len(self)
        return None

    def covers_offset(self, offset: int) -> bool:
        return any(s.offset <= offset < s.offset + s.length for s in self._spans)
