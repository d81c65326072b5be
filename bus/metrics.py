"""Prometheus metrics of a bus process, and the /metrics endpoint.

The metrics updated once per event (events in; the hop, handler,
capture-to-output and commit histograms) are :class:`EventCounter` and
:class:`EventHistogram`: the same exposition as prometheus_client's ``Counter``
and ``Histogram``, without their per-update lock and value objects (an update is
an addition, or a bisect and two; the event loop is their only writer).
"""

from __future__ import annotations

import contextlib
import math
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from bus import clock


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: a value on a bound counts in it
        self.sum += value


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _Labelled(Collector):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: object) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        if registry is not None:
            registry.register(self)  # type: ignore[attr-defined]

    def _child(self, values: tuple[str, ...], make: Any) -> Any:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = make()
        return child


class EventCounter(_Labelled):
    """A labelled counter for counts updated per event (``name`` ends in ``_total``)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: object = REGISTRY) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry)

    def labels(self, *values: str) -> _CounterChild:
        return self._child(values, _CounterChild)  # type: ignore[no-any-return]

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        yield family

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)


class EventHistogram(_Labelled):
    """A labelled histogram for values observed per event (see the module's docstring)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float], registry: object = REGISTRY) -> None:
        super().__init__(name, documentation, labelnames, registry)
        self.bounds = tuple(sorted(float(b) for b in buckets if b != math.inf))

    def labels(self, *values: str) -> _HistogramChild:
        return self._child(values, lambda: _HistogramChild(self.bounds))  # type: ignore[no-any-return]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            counts, total = list(child.counts), child.sum  # a snapshot: the loop keeps writing
            buckets, cumulative = [], 0
            for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric(list(values), buckets, total)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
_E2E_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 20, 60)

EVENTS_IN = EventCounter("s2st_events_in_total", "Input entries handed to the stage (once per entry, "
                    "not per retry)", ["stage"])
EVENTS_OUT = Counter("s2st_events_out_total", "Entries written: outputs and dead letters",
                     ["stage"])
DUPLICATES = Counter("s2st_duplicates_skipped_total", "Outputs not written again", ["stage"])
FAILURES = Counter("s2st_handler_failures_total", "Handler calls that raised", ["stage"])
DEAD_LETTERS = Counter("s2st_dead_letters_total", "Entries moved to a dead-letter stream",
                       ["stage", "reason"])
LOST_ENTRIES = Counter("s2st_trimmed_pending_total",
                       "Pending entries trimmed before they were handled", ["stage"])
HANDLER_SECONDS = EventHistogram("s2st_handler_seconds", "Time in the stage handler", ["stage"],
                            buckets=_LATENCY_BUCKETS)
HOP_SECONDS = EventHistogram("s2st_hop_seconds",
                        "Bus time: previous stage's write to this stage's read", ["stage"],
                        buckets=_LATENCY_BUCKETS)
E2E_SECONDS = EventHistogram("s2st_capture_to_output_seconds",
                        "Capture end of the source audio to this stage's output", ["stage"],
                        buckets=_E2E_BUCKETS)
COMMIT_SECONDS = EventHistogram("s2st_commit_seconds", "Atomic hand-off round trip", ["stage"],
                           buckets=_LATENCY_BUCKETS)
LEASES = Gauge("s2st_leases_held", "Streams this worker owns", ["stage"])
LAG = Gauge("s2st_group_lag", "Entries not yet read by this stage in its owned streams",
            ["stage"])
PENDING = Gauge("s2st_group_pending", "Entries read but not acknowledged in owned streams",
                ["stage"])
LEASES_LOST = Counter("s2st_leases_lost_total", "Leases lost to expiry or fencing", ["stage"])
SESSIONS_EXPIRED = Counter("s2st_sessions_expired_total", "Sessions ended for lack of heartbeat",
                           ["stage"])
REGISTRY_BAD_ENTRIES = Counter(
    "s2st_registry_bad_entries_total",
    "Registry entries skipped as unreadable (written by hand, by a broken client): each "
    "key, field and value once per process", ["kind"])
LOOP_ERRORS = Counter("s2st_loop_errors_total",
                      "Unexpected exceptions in a round of a worker's loop (the next round runs)",
                      ["stage", "loop"])


class ClockCollector(Collector):
    """This process's offset to Redis's clock (bus/clock.py), read at each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        offset = GaugeMetricFamily(
            "s2st_clock_offset_seconds", "Redis's clock minus this host's, as last measured "
            "(every timestamp on the bus is in Redis's time)")
        offset.add_metric([], clock.offset())
        yield offset
        last = clock.last()
        trip = GaugeMetricFamily(
            "s2st_clock_round_trip_seconds", "Round trip of the TIME sample the offset was "
            "measured with (the offset is within half of it)")
        trip.add_metric([], last.round_trip if last is not None else math.nan)
        yield trip

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self.collect()


def register_clock(registry: Any) -> None:
    """Export the clock gauges in ``registry`` too (once per registry)."""
    with contextlib.suppress(ValueError):  # already there
        registry.register(ClockCollector())


register_clock(REGISTRY)


def serve_metrics(port: int) -> int:
    """Serve /metrics on ``port`` (0 = any free port); returns the port."""
    server, _thread = start_http_server(port)
    return int(server.server_port)
