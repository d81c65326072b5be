"""Stopping asyncio tasks for sure, within a bound.

On Python 3.11 a cancellation that arrives while a redis-py command's reply is coming in can
be lost: the command returns its reply instead of raising ``CancelledError`` (measured here:
about one cancellation in ten of an XREAD that was answering). A ``while True`` loop around
such a call then simply goes on, and whoever awaits the cancelled task waits for ever.

:func:`cancel_and_wait` therefore cancels again, every ``retry_s``, each task that is still
running, up to ``timeout_s``, and returns those that never stopped so that the caller can say
so and go on. Loops that may be cancelled should also check a flag of their own before each
round (:class:`StopFlag`), which makes the stop certain rather than likely.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from bus.logs import get_logger

log = get_logger("tasks")

T = TypeVar("T")


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], *, timeout_s: float = 5.0,
                          retry_s: float = 0.05, what: str = "tasks") -> set[asyncio.Future[Any]]:
    """Cancel ``tasks`` and wait until they are done, at most ``timeout_s``.

    A task that swallowed its cancellation is cancelled again every ``retry_s``. Exceptions
    of the tasks are retrieved (never re-raised here). Returns the tasks still running at the
    deadline, after logging their names once.
    """
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    deadline = time.monotonic() + timeout_s
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - time.monotonic()
        if left <= 0:
            break
        _done, pending = await asyncio.wait(pending, timeout=min(retry_s, left))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
    if pending:
        log.warning("tasks did not stop", what=what, timeout_s=timeout_s,
                    tasks=sorted(_name(t) for t in pending))
    return pending


async def within(awaitable: Awaitable[T], timeout_s: float, *, what: str = "call") -> T:
    """``await awaitable`` for at most ``timeout_s`` (TimeoutError after it), like
    ``asyncio.wait_for``, but a call that loses its cancellation at the deadline is cancelled
    again (bounded) instead of being waited for until it ends by itself."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        await cancel_and_wait([task], what=what)
        raise
    if task in done:
        return task.result()
    await cancel_and_wait([task], what=what)
    raise TimeoutError(f"{what} did not finish within {timeout_s:g} s")


def _name(task: asyncio.Future[Any]) -> str:
    get_name = getattr(task, "get_name", None)
    return str(get_name()) if get_name is not None else repr(task)


class StopFlag:
    """A flag the loops of one component check before each round (see the module doc)."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def __bool__(self) -> bool:
        return self._set
