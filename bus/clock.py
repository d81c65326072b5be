"""One clock for every process: Redis's.

Timestamps written to the bus (capture times, ``emitted``, trace hops, heartbeats, session
records) are compared by other processes on other hosts: a capture agent's ``capture_end``
with a worker's ``emitted``, a capture agent's heartbeat with the janitor's now. Hosts'
clocks disagree (an unsynced laptop is seconds off), so every process stamps and compares
in **Redis's time** instead of its own: at connect (:func:`bus.connection.connect`) it
measures the offset of its clock to Redis ``TIME``, NTP-style, and :func:`now` is this
host's clock plus that offset. Intervals measured inside one process (sleeps, timeouts,
handler durations) keep using ``time.monotonic``/``perf_counter``.

Measuring: a few ``TIME`` round trips, one after the other; for each,
``offset = redis_time - (t_send + t_recv) / 2``; the sample with the shortest round trip
is kept (the one whose reply waited least on the way, so the midpoint is the closest to
when Redis read its clock). The error is at most half that round trip. A background task
measures again every :data:`REFRESH_S` seconds (a host whose clock drifts or is stepped
is followed), with its own short-lived connection, bounded in time; a failure keeps the
last offset and is only logged.

``S2ST_CLOCK_SKEW_S`` (tests, experiments) shifts this process's reading of its own clock
before the offset is measured: a process with a skew behaves as a host whose clock is that
far off, and the measured offset cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bus.logs import get_logger
from bus.tasks import within

log = get_logger("s2st.clock")

SAMPLES = 5  # TIME round trips per measurement
REFRESH_S = 45.0  # measure again this often
MEASURE_TIMEOUT_S = 3.0  # a measurement taking longer is given up (the last offset stays)
WARN_OFFSET_S = 1.0  # a larger offset is logged as a warning

_wall = time.time


@dataclass(frozen=True)
class Measurement:
    offset: float  # Redis's time minus this process's clock (with its skew), seconds
    round_trip: float  # of the sample kept, seconds: the offset is within half of it
    at: float  # time.monotonic() when measured


_skew = 0.0  # S2ST_CLOCK_SKEW_S
_offset = 0.0  # the last measured offset
_shift = 0.0  # _skew + _offset, what now() adds
_last: Measurement | None = None
_task: asyncio.Task[None] | None = None
_warned_untimed = False


def now() -> float:
    """Epoch seconds in Redis's time: what every timestamp on the bus is."""
    return _wall() + _shift


def local() -> float:
    """This process's own reading of the wall clock (with ``S2ST_CLOCK_SKEW_S``)."""
    return _wall() + _skew


def skew() -> float:
    """The injected shift of this process's clock reading (S2ST_CLOCK_SKEW_S)."""
    return _skew


def offset() -> float:
    """Redis's time minus this process's clock, as last measured (0 before)."""
    return _offset


def last() -> Measurement | None:
    return _last


def log_fields() -> dict[str, float | None]:
    """The offset and round trip as last measured, for a process's start line."""
    if _last is None:
        return {"clock_offset_s": None}
    return {"clock_offset_s": round(_last.offset, 4),
            "clock_round_trip_ms": round(_last.round_trip * 1000, 2)}


def set_skew(seconds: float) -> None:
    """Shift this process's clock reading (S2ST_CLOCK_SKEW_S). The offset already measured
    still refers to the old reading: measure again (``sync``) after changing it."""
    global _skew, _shift
    if not math.isfinite(seconds):
        raise ValueError(f"clock skew must be finite, not {seconds!r}")
    _skew = float(seconds)
    _shift = _skew + _offset


def set_offset(seconds: float, round_trip: float = 0.0) -> None:
    """Use ``seconds`` as the offset to Redis (what a measurement does; for tests)."""
    global _offset, _shift, _last
    _offset = float(seconds)
    _shift = _skew + _offset
    _last = Measurement(_offset, round_trip, time.monotonic())


def reset() -> None:
    """Back to this host's clock: no skew, no offset, nothing measured (for tests)."""
    global _skew, _offset, _shift, _last
    _skew = _offset = _shift = 0.0
    _last = None


async def measure(client: Any, *, samples: int = SAMPLES, node: Any = None) -> Measurement:
    """The offset of this process's clock to Redis's (see the module docstring)."""
    best: Measurement | None = None
    for _ in range(max(1, samples)):
        sent = local()
        t0 = time.perf_counter()
        if node is None:
            reply = await client.execute_command("TIME")
        else:
            reply = await client.execute_command("TIME", target_nodes=node)
        round_trip = time.perf_counter() - t0
        if isinstance(reply, dict):  # a cluster client's answer, by node
            reply = next(iter(reply.values()))
        seconds, micros = (int(x) for x in reply)
        offset = seconds + micros / 1e6 - (sent + round_trip / 2)
        if best is None or round_trip < best.round_trip:
            best = Measurement(offset, round_trip, time.monotonic())
    assert best is not None
    return best


def _apply(m: Measurement) -> None:
    global _offset, _shift, _last
    previous = _offset if _last is not None else None
    _offset, _last = m.offset, m
    _shift = _skew + _offset
    if previous is None:
        fields = {"offset_s": round(m.offset, 4), "round_trip_ms": round(m.round_trip * 1000, 2)}
        if abs(m.offset) > WARN_OFFSET_S:
            ahead = "ahead of" if m.offset < 0 else "behind"
            log.warning(f"this host's clock is {abs(m.offset):.1f} s {ahead} Redis's; "
                        "timestamps use Redis's time", **fields)
        else:  # (workers and capture agents show it in their start line: log_fields)
            log.debug("clock offset to Redis measured", **fields)
    elif abs(m.offset - previous) > WARN_OFFSET_S:
        log.warning("this host's clock jumped: its offset to Redis changed; timestamps use "
                    "Redis's time", offset_s=round(m.offset, 4), previous_s=round(previous, 4))
    else:
        log.debug("clock offset to Redis", offset_s=round(m.offset, 4),
                  round_trip_ms=round(m.round_trip * 1000, 2))


async def sync(client: Any, *, node: Any = None, max_age_s: float = REFRESH_S) -> None:
    """Measure the offset now unless a measurement younger than ``max_age_s`` exists; a
    Redis that refuses TIME (an ACL without it) or fails leaves the clock as it was."""
    global _warned_untimed
    if _last is not None and time.monotonic() - _last.at < max_age_s:
        return
    try:
        m = await within(measure(client, node=node), MEASURE_TIMEOUT_S, what="clock sync")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not _warned_untimed:
            _warned_untimed = True
            log.warning("cannot read Redis's clock (TIME); timestamps use this host's clock "
                        "(the ACL user needs +time)", error=str(exc) or type(exc).__name__)
        return
    _apply(m)


def keep_synced(make_client: Callable[[], Any], *, node_of: Callable[[Any], Any] | None = None,
                every_s: float = REFRESH_S) -> asyncio.Task[None]:
    """Measure again every ``every_s`` in a background task of the running loop (one per
    process; started again in a new loop). Each round opens its own connection, closed
    after; a round that fails or takes longer than MEASURE_TIMEOUT_S keeps the last offset."""
    global _task
    loop = asyncio.get_running_loop()
    if _task is not None and not _task.done() and _task.get_loop() is loop:
        return _task
    _task = loop.create_task(_refresh_loop(make_client, node_of, every_s), name="clock-sync")
    return _task


async def _refresh_loop(make_client: Callable[[], Any], node_of: Callable[[Any], Any] | None,
                        every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        client = None
        try:
            client = make_client()
            if node_of is not None:
                await within(client.initialize(), MEASURE_TIMEOUT_S, what="clock sync")
            node = node_of(client) if node_of is not None else None
            m = await within(measure(client, node=node), MEASURE_TIMEOUT_S, what="clock sync")
            if _last is not None and m.round_trip > _last.round_trip \
                    and abs(m.offset - _last.offset) <= m.round_trip / 2:
                # no news within this sample's error (a busy loop or network): the sharper
                # measurement stays, so timestamps do not jitter by a few ms at each round
                m = Measurement(_last.offset, _last.round_trip, m.at)
            _apply(m)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis away for a moment: keep the last offset
            log.debug("clock: measuring the offset to Redis failed; keeping the last one",
                      error=str(exc) or type(exc).__name__)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), 1.0)
