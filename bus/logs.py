"""Structured logging through structlog: readable on a terminal, JSON for machines."""

from __future__ import annotations

import logging
import sys

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


_debug = True  # structlog's own default logs everything until configure_logging says otherwise


def debug_enabled() -> bool:
    """Cheap check for per-event debug lines (the logger proxy costs more than the event)."""
    return _debug


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write (not at configure time:
    a stream replaced or closed since, as under a test runner's capture, must not break logs)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Configure structlog for this process (log lines go to stderr)."""
    global _debug
    _debug = _LEVELS[level] <= logging.DEBUG
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
