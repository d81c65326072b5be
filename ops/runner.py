"""Moved to :mod:`bus.command` (the shared command entry); kept for ops' own importers."""

from __future__ import annotations

from bus.command import run_async

__all__ = ["run_async"]
