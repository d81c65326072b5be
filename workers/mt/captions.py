"""Live captions from partial transcripts: throttled, and shown only where they agree.

Partial transcripts change as the ASR hears more, and a translation of each one would make
the caption jump about. For one target language, :class:`CaptionStabilizer` translates at most
one partial every ``min_interval_s`` (the newest one waiting is translated at the next
``tick``), and shows only the longest word prefix on which the last two translations agree, and
only when that prefix grows or changes (never to show less). Captions are never spoken; a committed translation
replaces them (``reset``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def common_word_prefix(a: str, b: str) -> str:
    """The longest run of leading words two texts share."""
    shared: list[str] = []
    for x, y in zip(a.split(), b.split(), strict=False):
        if x != y:
            break
        shared.append(x)
    return " ".join(shared)


@dataclass(frozen=True)
class Caption:
    text: str  # the agreed prefix of the translation
    source_text: str  # the source text that was translated


class CaptionStabilizer:
    def __init__(
        self,
        translate: Callable[[str], str],
        min_interval_s: float = 0.5,
    ) -> None:
        self._translate = translate
        self.min_interval_s = min_interval_s
        self._last_run: float | None = None
        self._waiting: str | None = None
        self._previous: str | None = None
        self._shown = ""
        self.translations = 0

    @property
    def shown(self) -> str:
        return self._shown

    def offer(self, source_text: str, now: float) -> Caption | None:
        """A new partial source text; returns a caption when the shown text changes."""
        self._waiting = " ".join(source_text.split())
        return self.tick(now)

    def tick(self, now: float) -> Caption | None:
        """Translate the newest waiting partial if the throttle allows."""
        if self._waiting is None:
            return None
        if self._last_run is not None and now - self._last_run < self.min_interval_s:
            return None
        source, self._waiting = self._waiting, None
        self._last_run = now
        if not source:
            return None
        translation = " ".join(self._translate(source).split())
        self.translations += 1
        previous, self._previous = self._previous, translation
        if previous is None:
            return None
        agreed = common_word_prefix(previous, translation)
        if not agreed or common_word_prefix(agreed, self._shown) == agreed:
            return None  # nothing new agreed (a shrinking agreement keeps the caption shown)
        self._shown = agreed
        return Caption(text=agreed, source_text=source)

    def reset(self) -> None:
        """A committed translation now covers what the captions showed."""
        self._waiting = None
        self._previous = None
        self._shown = ""
