"""Prometheus metrics of a bus process, and the /metrics endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
_E2E_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 20, 60)

EVENTS_IN = Counter("s2st_events_in_total", "Input entries handed to the stage (once per entry, "
                    "not per retry)", ["stage"])
EVENTS_OUT = Counter("s2st_events_out_total", "Entries written: outputs and dead letters",
                     ["stage"])
DUPLICATES = Counter("s2st_duplicates_skipped_total", "Outputs not written again", ["stage"])
FAILURES = Counter("s2st_handler_failures_total", "Handler calls that raised", ["stage"])
DEAD_LETTERS = Counter("s2st_dead_letters_total", "Entries moved to a dead-letter stream",
                       ["stage", "reason"])
LOST_ENTRIES = Counter("s2st_trimmed_pending_total",
                       "Pending entries trimmed before they were handled", ["stage"])
HANDLER_SECONDS = Histogram("s2st_handler_seconds", "Time in the stage handler", ["stage"],
                            buckets=_LATENCY_BUCKETS)
HOP_SECONDS = Histogram("s2st_hop_seconds",
                        "Bus time: previous stage's write to this stage's read", ["stage"],
                        buckets=_LATENCY_BUCKETS)
E2E_SECONDS = Histogram("s2st_capture_to_output_seconds",
                        "Capture end of the source audio to this stage's output", ["stage"],
                        buckets=_E2E_BUCKETS)
COMMIT_SECONDS = Histogram("s2st_commit_seconds", "Atomic hand-off round trip", ["stage"],
                           buckets=_LATENCY_BUCKETS)
LEASES = Gauge("s2st_leases_held", "Streams this worker owns", ["stage"])
LAG = Gauge("s2st_group_lag", "Entries not yet read by this stage in its owned streams",
            ["stage"])
PENDING = Gauge("s2st_group_pending", "Entries read but not acknowledged in owned streams",
                ["stage"])
LEASES_LOST = Counter("s2st_leases_lost_total", "Leases lost to expiry or fencing", ["stage"])
SESSIONS_EXPIRED = Counter("s2st_sessions_expired_total", "Sessions ended for lack of heartbeat",
                           ["stage"])


def serve_metrics(port: int) -> int:
    """Serve /metrics on ``port`` (0 = any free port); returns the port."""
    server, _thread = start_http_server(port)
    return int(server.server_port)
