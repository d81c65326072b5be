"""Redis replies as text: the one place that turns a reply's bytes into ``str``."""

from __future__ import annotations

from typing import Any


def as_text(value: Any, errors: str = "strict") -> str:
    """``value`` as text: bytes decoded as UTF-8 (``errors`` as for :meth:`bytes.decode`:
    ``"replace"`` or ``"backslashreplace"`` to show what a hand-written, non-UTF-8 name holds),
    anything else through ``str``."""
    return value.decode("utf-8", errors) if isinstance(value, bytes) else str(value)


def as_text_or_none(value: Any) -> str | None:
    """``value`` as text; None for bytes that are not UTF-8 (a field written by hand)."""
    try:
        return as_text(value)
    except UnicodeDecodeError:
        return None
