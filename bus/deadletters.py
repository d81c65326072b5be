"""Dead letters read back: why one was written and its figures, for every reader of them
(the operator view, the soak test's accounting)."""

from __future__ import annotations

from typing import Any

from bus.events import DeadLetter, MalformedEvent, decode
from bus.text import as_text


def dead_reason(error: str) -> str:
    """The runtime's reason for a dead letter, from its error text (bus/runtime/handler.py)."""
    if error.startswith("oversized:"):
        return "oversized"
    if error.startswith("malformed:"):
        return "malformed"
    if error.startswith("rejected:"):
        return "rejected"
    if error.startswith("after the end of its stream"):
        return "late"
    if error.startswith("delivered ") and "without completing" in error:
        return "attempts"
    return "failed"


def dead_entry(entry_id: Any, fields: Any) -> dict[str, Any] | None:
    """A dead letter's figures: stage, stream, session, the original entry's seq, reason."""
    try:
        dead = decode(fields)
    except (MalformedEvent, ValueError):
        return None
    if not isinstance(dead, DeadLetter):
        return None
    seq = dead.original.get("seq")
    # <family>:<session>, or <family>:<session>:<lang> for a per-language family
    parts = dead.stream.split("}:", 1)[-1].split(":")
    family = f"{parts[0]}:{parts[-1]}" if len(parts) >= 3 else parts[0]
    return {
        "id": as_text(entry_id), "stage": dead.stage, "worker": dead.worker,
        "stream": dead.stream, "family": family, "session": dead.session,
        "reason": dead_reason(dead.error), "error": dead.error[:300],
        "attempts": dead.attempts, "failed_at": dead.failed_at,
        "seq": int(seq) if seq is not None and as_text(seq).isdigit() else None,
    }
