"""The one small interface every translation backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Translator(Protocol):
    """Translates one text from ``src`` to ``tgt`` (ISO 639-1 codes).

    ``context`` holds the previous source sentences of the same session, oldest first; a
    backend that cannot use context ignores it. ``fast`` says whether the backend is cheap
    enough to translate partial transcripts for live captions.
    """

    name: str
    fast: bool

    def supports(self, src: str, tgt: str) -> bool:
        """Whether this backend translates ``src`` into ``tgt`` directly."""
        ...

    def translate(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> str:
        """The translation of ``text`` (raises :class:`~workers.mt.errors.MTError`)."""
        ...

    def close(self) -> None:
        """Free processes, memory or devices held by the backend."""
        ...
