"""Prometheus metrics of the MT worker (served on the bus's /metrics port).

What the worker could not do as configured is counted here, and shown by `s2st status`
through the worker's health record (``MTStage.health``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

BACKEND_UNAVAILABLE = Gauge(
    "s2st_mt_backend_unavailable",
    "1 for a configured MT backend that could not load (its pairs use the next backend of "
    "their rule, S2ST_MT_MODEL_FALLBACK=on)",
    ["backend"],
)
FALLBACKS = Counter(
    "s2st_mt_backend_fallback_total",
    "Committed spans translated on a fallback route: a backend the pair's rule prefers "
    "could not load",
    ["pair", "wanted", "used"],
)
SKIPPED = Counter(
    "s2st_mt_skipped_total",
    "Committed spans a target language did not get (reason: no_route, backend_failure, "
    "empty, error)",
    ["pair", "reason"],
)
