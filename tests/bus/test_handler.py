"""The per-entry rules (bus/runtime/handler.py) through a recording target: no Redis, no Worker."""

from __future__ import annotations

from typing import Any

from bus.keys import Partition
from bus.runtime.handler import RetryPolicy, handle_entry
from bus.stage import Delivery, Emit, Reject
from bus.testing import make_chunk

PART = Partition("r1", "s1")
POLICY = RetryPolicy(max_attempts=3, backoff_s=0.5, timeout_s=1.0)


class Recorder:
    """A handler target whose stage call fails ``fails`` times (with ``error``) first."""

    def __init__(self, fails: int = 0, error: Exception | None = None, go_on: bool = True):
        self.fails, self.error, self.go_on = fails, error or RuntimeError("boom"), go_on
        self.calls: list[tuple[int, bool]] = []  # (attempts, retry) of each call
        self.failures: list[int] = []
        self.waits: list[float] = []
        self.dead: list[tuple[str, str, int]] = []
        self.done: list[list[Emit]] = []

    def before(self, delivery: Delivery) -> None:
        pass

    async def call(self, delivery: Delivery) -> list[Emit]:
        self.calls.append((delivery.attempts, delivery.retry))
        if len(self.calls) <= self.fails:
            raise self.error
        return []

    async def handled(self, delivery: Delivery, emits: list[Emit], seconds: float) -> None:
        self.done.append(emits)

    async def dead_letter(self, error: str, reason: str, attempts: int) -> None:
        self.dead.append((error, reason, attempts))

    def on_failure(self, delivery: Delivery, exc: BaseException, attempts: int) -> None:
        self.failures.append(attempts)

    def keep_going(self) -> bool:
        return self.go_on

    async def back_off(self, seconds: float) -> None:
        self.waits.append(seconds)


async def _handle(target: Recorder, fields: list[Any] | None = None, attempts: int = 0,
                  max_bytes: int = 1 << 20) -> None:
    if fields is None:
        fields = [x for kv in make_chunk("r1", "s1", 0).to_fields().items() for x in kv]
    await handle_entry(target, POLICY, entry_id="1-0", stream="k", fields=fields, part=PART,
                       attempts=attempts, max_event_bytes=max_bytes)


async def test_a_failing_call_is_retried_with_growing_back_off() -> None:
    t = Recorder(fails=2)
    await _handle(t)
    assert t.calls == [(0, False), (1, True), (2, True)]
    assert t.failures == [1, 2] and t.waits == [0.5, 1.0]
    assert len(t.done) == 1 and t.dead == []


async def test_retries_end_in_a_dead_letter() -> None:
    t = Recorder(fails=5)
    await _handle(t)
    assert len(t.calls) == 3 and t.done == []
    assert t.dead == [("RuntimeError: boom", "failed", 3)]


async def test_a_rejected_entry_is_dead_at_once() -> None:
    t = Recorder(fails=1, error=Reject("no"))
    await _handle(t)
    assert t.dead == [("rejected: no", "rejected", 1)] and t.failures == [1]


async def test_a_stream_being_given_up_leaves_the_entry_pending() -> None:
    t = Recorder(fails=1, go_on=False)
    await _handle(t)
    assert len(t.calls) == 1 and t.dead == [] and t.done == [] and t.waits == []


async def test_bad_entries_are_dead_before_any_call() -> None:
    t = Recorder()
    await _handle(t, fields=[b"type", b"nonsense"])
    await _handle(t, max_bytes=10)
    await _handle(t, attempts=3)
    assert t.calls == []
    assert [reason for _e, reason, _n in t.dead] == ["malformed", "oversized", "attempts"]
    assert t.dead[2][2] == 3


def test_retry_policy() -> None:
    assert not POLICY.exhausted(2) and POLICY.exhausted(3)
    assert POLICY.delay_s(3) == 1.5
    assert str(POLICY.timeout_error()) == "the handler took more than 1 s"
