"""Clocks and the drift-free pacing used to play files at real-time speed.

A `Clock` gives wall time (epoch seconds, for event timestamps: in Redis's time, see
bus/clock.py), a monotonic time (for scheduling) and sleep. `SystemClock` is the real one;
`ManualClock` is a fake whose sleep advances time instantly, for tests and for measuring the
pacing loop without waiting.
"""

from __future__ import annotations

import time
from typing import Protocol

from bus import clock as bus_clock


class Clock(Protocol):
    def wall(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def wall(self) -> float:
        return bus_clock.now()  # Redis's time: compared with other hosts' stamps

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A fake clock: sleep() advances time by exactly the requested amount.

    `work_per_call` adds a fixed amount of simulated processing time to every monotonic()
    reading, which lets a test check that the pacer absorbs per-block overheads.
    """

    def __init__(self, wall_start: float = 1_700_000_000.0, work_per_call: float = 0.0) -> None:
        self._now = 0.0
        self._wall_start = wall_start
        self.work_per_call = work_per_call
        self.sleeps: list[float] = []

    def wall(self) -> float:
        return self._wall_start + self._now

    def monotonic(self) -> float:
        self._now += self.work_per_call
        return self._now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds > 0:
            self._now += seconds

    def advance(self, seconds: float) -> None:
        self._now += seconds


_PAIRED_S = 0.01  # a wall reading between two monotonic ones at most this far apart


class Pacer:
    """Releases sample counts at real-time speed, scheduled on the absolute start time.

    `wait_until(n)` sleeps until `n` samples' worth of time has passed since `start()`.
    Because every deadline is computed from the start (not by sleeping one block length
    after the previous wake-up), scheduling jitter and processing time never accumulate.
    """

    def __init__(self, clock: Clock, rate: int) -> None:
        self.clock = clock
        self.rate = rate
        self._t0: float | None = None
        self.wall0 = 0.0
        self.late_s = 0.0  # worst lateness seen (deadline already past on arrival)

    def start(self) -> None:
        # t0 and wall0 must be one instant: every capture time is wall0 + the time paced since
        # t0. A thread preempted between the two readings (a busy host) would put the whole
        # timeline that far ahead, capture times later than the chunks are sent: read again
        # while the readings are far apart.
        for _ in range(5):
            t0 = self.clock.monotonic()
            wall0 = self.clock.wall()
            if self.clock.monotonic() - t0 < _PAIRED_S:
                break
        self._t0, self.wall0 = t0, wall0

    @property
    def started(self) -> bool:
        return self._t0 is not None

    def deadline(self, samples: int) -> float:
        if self._t0 is None:
            raise RuntimeError("Pacer.start() was not called")
        return self._t0 + samples / self.rate

    def wait_until(self, samples: int) -> None:
        delay = self.deadline(samples) - self.clock.monotonic()
        if delay > 0:
            self.clock.sleep(delay)
        else:
            self.late_s = max(self.late_s, -delay)

    def wall_at(self, samples: int) -> float:
        """Wall-clock time of the sample at `samples` on the paced timeline."""
        return self.wall0 + samples / self.rate
