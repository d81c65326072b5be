"""Errors of the MT engine.

Input errors (:class:`InputRejected`, :class:`UnsupportedPair`) are permanent: retrying the same
event gives the same answer, so the worker dead-letters it. :class:`BackendFailure` is a
translator that failed or hung on good input (it has been restarted by then).
"""

from __future__ import annotations


class MTError(Exception):
    """Base class of every error the MT engine raises on purpose."""


class InputRejected(MTError):
    """The text cannot be translated as given (too long, not text)."""


class UnsupportedPair(MTError):
    """No configured backend, directly or through a pivot, translates src into tgt."""

    def __init__(self, src: str, tgt: str, detail: str = "") -> None:
        self.src = src
        self.tgt = tgt
        message = f"no translation route from {src!r} to {tgt!r}"
        super().__init__(f"{message}: {detail}" if detail else message)


class BackendUnavailable(MTError):
    """A backend cannot start: its program, data or model weights are missing."""


class BackendFailure(MTError):
    """A backend failed or timed out on one text; it has been reset for the next one."""


class StartupError(MTError):
    """The worker cannot start as configured (a model named by a rule does not load)."""
