"""Prometheus metrics of the TTS worker (served on the bus's /metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_TTFA_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
_RTF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)

TTFA_SECONDS = Histogram(
    "s2st_tts_first_audio_seconds",
    "Translation read to its first speech piece written to the bus",
    ["lang"],
    buckets=_TTFA_BUCKETS,
)
SYNTH_RTF = Histogram(
    "s2st_tts_rtf",
    "Synthesis time of a piece divided by its audio duration",
    ["lang", "backend"],
    buckets=_RTF_BUCKETS,
)
PIECES = Counter("s2st_tts_pieces_total", "Speech pieces written", ["lang", "backend"])
FALLBACKS = Counter(
    "s2st_tts_fallbacks_total", "Pieces spoken by a later backend of the chain", ["lang", "backend"]
)
BACKEND_FAILURES = Counter(
    "s2st_tts_backend_failures_total", "Backend calls that failed (then fell back)", ["backend"]
)
SPEED = Histogram(
    "s2st_tts_speed",
    "Pace of each segment's voice, 1 = its own (faster to keep up with the speaker)",
    ["lang"],
    buckets=(1.0, 1.05, 1.1, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0),
)
LATE_SEGMENTS = Counter(
    "s2st_tts_late_segments_total",
    "Segments so late behind their source that the fast fallback voice spoke them",
    ["lang"],
)
PASSED_OVER = Counter(
    "s2st_tts_passed_over_total",
    "Pieces a voice would have had ready too late (or ran over S2ST_TTS_MAX_RTF): the next "
    "voice of the chain spoke them",
    ["lang", "backend"],
)
RUNNING_RTF = Gauge(
    "s2st_tts_running_rtf",
    "Running real-time factor of each voice here, from the pieces it spoke",
    ["lang", "backend"],
)
EMPTY_SEGMENTS = Counter(
    "s2st_tts_empty_segments_total", "Committed translations with nothing speakable", ["lang"]
)
