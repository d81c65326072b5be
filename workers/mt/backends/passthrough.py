"""The backend for a listener who speaks the speaker's language: the text itself."""

from __future__ import annotations

from collections.abc import Sequence


class PassthroughTranslator:
    name = "passthrough"
    fast = True

    def supports(self, src: str, tgt: str) -> bool:
        return src == tgt

    def translate(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> str:
        if src != tgt:
            raise ValueError(f"passthrough cannot translate {src} into {tgt}")
        return " ".join(text.split())

    def close(self) -> None:
        return None
