"""Per-piece latency of the translated speech, as a listener experiences it.

For every piece played, two figures from the end of the source audio it translates
(``capture_end``, wall-clock epoch seconds set by the capture agent):

- ``available``: until the player read it from the bus;
- ``playback``: until it started playing (after ordering, the jitter hold and the
  pieces queued in front of it, including the earlier pieces of its own segment).

``first`` is ``playback`` of the first piece of each segment only: how long after the
speaker stopped the translation starts to be heard.

Both are kept in memory for the final p50/p95/max report and observed into
Prometheus histograms (``s2st_player_latency_seconds{kind, lang}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 20, 60)

LATENCY = Histogram(
    "s2st_player_latency_seconds",
    "Source capture end to a piece being available (read), starting to play, or to a "
    "segment's first piece starting to play (first)",
    ["kind", "lang"],
    buckets=_BUCKETS,
)
PIECES = Counter(
    "s2st_player_pieces_total",
    "Speech pieces by outcome: played, duplicate, late, missing (skipped after the deadline)",
    ["outcome", "lang"],
)

KINDS = ("available", "playback", "first")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Summary:
    count: int
    p50: float
    p95: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "max": self.max}


@dataclass
class LatencyRecorder:
    lang: str
    samples: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def record(self, kind: str, capture_end: float, at: float) -> float:
        if kind not in self.samples:
            raise ValueError(f"unknown latency kind {kind!r} (expected one of {KINDS})")
        value = at - capture_end
        self.samples[kind].append(value)
        LATENCY.labels(kind, self.lang).observe(max(value, 0.0))
        return value

    def summary(self, kind: str) -> Summary:
        values = self.samples[kind]
        return Summary(
            count=len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            max=max(values) if values else math.nan,
        )

    def report(self) -> str:
        lines = []
        for kind in KINDS:
            s = self.summary(kind)
            if s.count:
                lines.append(
                    f"latency {kind:9s} n={s.count} p50={s.p50:.3f}s p95={s.p95:.3f}s "
                    f"max={s.max:.3f}s"
                )
            else:
                lines.append(f"latency {kind:9s} n=0")
        return "\n".join(lines)


def count_outcome(outcome: str, lang: str, n: int = 1) -> None:
    if n > 0:
        PIECES.labels(outcome, lang).inc(n)
