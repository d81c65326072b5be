"""One input entry through the stage: decoding, retries, dead letters.

The rules are the same wherever a stage runs, in a :class:`~bus.runtime.Worker` or in the
in-memory harness (bus/harness.py): :func:`handle_entry` applies them and leaves what they
lead to (writing, dead-lettering, waiting) to a :class:`Target`. An entry larger than
``max_event_bytes``, one that does not decode (or belongs to another session), one delivered
``max_attempts`` times already (to workers that died on it), one the stage rejects and one
whose handler keeps failing (``max_attempts`` calls, each limited to ``handler_timeout_s``)
become dead letters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from bus import clock
from bus.events import DeadLetter, Event, MalformedEvent, decode_event
from bus.keys import Partition
from bus.settings import BusSettings
from bus.stage import Delivery, Emit, Reject
from bus.text import as_text

_KEPT_OF_OVERSIZED = 1024  # bytes of each field an oversized entry's dead letter keeps


@dataclass(frozen=True)
class RetryPolicy:
    """How often, how patiently and how long a handler is called for one entry."""

    max_attempts: int  # deliveries or calls of one entry before it is dead-lettered
    backoff_s: float  # the wait before call n+1 is n times this
    timeout_s: float  # a handler call running longer is cancelled (and failed)

    @classmethod
    def of(cls, settings: BusSettings) -> RetryPolicy:
        return cls(max_attempts=settings.max_attempts,
                   backoff_s=settings.retry_backoff_ms / 1000,
                   timeout_s=settings.handler_timeout_s)

    def exhausted(self, attempts: int) -> bool:
        """No attempt after ``attempts`` (failed deliveries or calls)."""
        return attempts >= self.max_attempts

    def delay_s(self, attempts: int) -> float:
        """The wait before the next call after ``attempts`` failed ones."""
        return self.backoff_s * attempts

    def timeout_error(self) -> TimeoutError:
        """What a handler call that ran out of time failed with."""
        return TimeoutError(f"the handler took more than {self.timeout_s:g} s")


class Target(Protocol):
    """Where :func:`handle_entry` sends what an entry led to."""

    async def call(self, delivery: Delivery) -> list[Emit]:
        """Run the stage's handler once; raise ``policy.timeout_error()`` when it ran out of
        time."""
        ...

    def before(self, delivery: Delivery) -> None:
        """A handler call starts."""

    async def handled(self, delivery: Delivery, emits: list[Emit], seconds: float) -> None:
        """The handler returned ``emits``: write them with the entry's acknowledgement."""

    async def dead_letter(self, error: str, reason: str, attempts: int) -> None:
        """Give the entry up to the dead letters (and acknowledge it)."""

    def on_failure(self, delivery: Delivery, exc: BaseException, attempts: int) -> None:
        """A call failed or rejected the entry (``attempts`` calls so far)."""

    def keep_going(self) -> bool:
        """After a failed call: False to leave the entry pending and stop here (the stream is
        being given up)."""
        ...

    async def back_off(self, seconds: float) -> None:
        """Wait before the next call."""


async def handle_entry(target: Target, policy: RetryPolicy, *, entry_id: str, stream: str,
                       fields: list[Any], part: Partition, attempts: int,
                       max_event_bytes: int) -> None:
    """Hand one entry (``fields``, delivered ``attempts`` times before) to the stage."""
    too_big = oversized(fields, max_event_bytes)
    if too_big:
        await target.dead_letter(too_big, "oversized", attempts)
        return
    try:
        event = decode_entry(fields, part)
    except (MalformedEvent, ValueError) as exc:
        await target.dead_letter(f"malformed: {exc}", "malformed", attempts)
        return
    if policy.exhausted(attempts):
        await target.dead_letter(f"delivered {attempts} times without completing "
                                 "(a worker died on it each time)", "attempts", attempts)
        return
    delivery = Delivery(entry_id, stream, event, attempts=attempts)
    while True:
        target.before(delivery)
        t0 = time.perf_counter()
        try:
            emits = await target.call(delivery)
        except Reject as exc:
            target.on_failure(delivery, exc, attempts + 1)
            await target.dead_letter(f"rejected: {exc}", "rejected", attempts + 1)
            return
        except Exception as exc:
            attempts += 1
            target.on_failure(delivery, exc, attempts)
            if not target.keep_going():
                return
            if policy.exhausted(attempts):
                await target.dead_letter(f"{type(exc).__name__}: {exc}", "failed", attempts)
                return
            delivery.attempts = attempts
            delivery.retry = True
            await target.back_off(policy.delay_s(attempts))
            continue
        await target.handled(delivery, list(emits or []), time.perf_counter() - t0)
        return


def oversized(fields: list[Any], max_bytes: int) -> str | None:
    """The error for an entry whose fields are larger than ``max_bytes``, else None."""
    size = sum(map(len, fields))
    if size > max_bytes:
        return f"oversized: {size} bytes, more than S2ST_MAX_EVENT_BYTES ({max_bytes})"
    return None


def decode_entry(fields: list[Any], part: Partition) -> Event:
    """The event of an input entry of stream ``part``; MalformedEvent (a ValueError) if it
    does not decode or belongs to another session."""
    event = decode_event(fields)
    if event.room != part.room or event.session != part.session:
        raise MalformedEvent(
            f"entry belongs to {event.room}/{event.session}, not to stream {part}")
    return event


def dead_letter_for(*, stage: str, worker: str, stream: str, entry_id: str, fields: list[Any],
                    error: str, reason: str, attempts: int, session: str) -> DeadLetter:
    """The dead letter of an input entry given up for ``reason`` (its original fields kept,
    cut to 1 kB each when it was oversized)."""
    raw = {as_text(k): (v if isinstance(v, bytes) else str(v).encode())
           for k, v in zip(fields[::2], fields[1::2], strict=False)}
    if reason == "oversized":  # keep what says what it was, not the bulk
        raw = {k: v[:_KEPT_OF_OVERSIZED] for k, v in raw.items()}
    return DeadLetter(stage=stage, worker=worker, stream=stream, entry_id=entry_id,
                      error=error[:2000], attempts=attempts, failed_at=clock.now(),
                      session=session, original=raw)
