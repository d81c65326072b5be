"""The capture figures as Prometheus metrics (gauges for state, counters for totals)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from bus.metrics import register_clock
from capture_agent.pipeline import CaptureStats

if TYPE_CHECKING:
    from capture_agent.publisher import PublishStats


class CaptureMetrics:
    """Mirror CaptureStats into prometheus_client metrics; call update() as often as liked.

    A private registry is used unless one is given (e.g. prometheus_client.REGISTRY when
    the agent serves /metrics with start_http_server).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        register_clock(r)  # s2st_clock_offset_seconds: this host's clock against Redis's
        self.level = Gauge(
            "s2st_capture_level_dbfs", "Input RMS level of the latest 32 ms frame", registry=r
        )
        self.prob = Gauge(
            "s2st_capture_speech_probability",
            "VAD speech probability of the latest frame",
            registry=r,
        )
        self.speaking = Gauge(
            "s2st_capture_vad_speech", "1 while inside an utterance, else 0", registry=r
        )
        self.progress = Gauge(
            "s2st_capture_progress_ratio", "Fraction of a file source processed", registry=r
        )
        self.audio_in = Counter(
            "s2st_capture_audio_in_seconds", "Audio read from the source", registry=r
        )
        self.audio_sent = Counter(
            "s2st_capture_audio_sent_seconds", "Audio sent in chunks", registry=r
        )
        self.audio_dropped = Counter(
            "s2st_capture_audio_dropped_seconds", "Silence not sent", registry=r
        )
        self.chunks = Counter("s2st_capture_chunks", "Audio chunks sent", registry=r)
        self.utterances = Counter("s2st_capture_utterances", "Utterances started", registry=r)
        self.overflows = Counter(
            "s2st_capture_overflows", "Input overflows (audio lost)", registry=r
        )
        self.published = Counter(
            "s2st_capture_published_chunks", "Audio chunks written to the bus", registry=r
        )
        self.buffered = Gauge(
            "s2st_capture_buffered_chunks", "Chunks waiting to be written to the bus", registry=r
        )
        self.buffered_s = Gauge(
            "s2st_capture_buffered_seconds", "Audio waiting to be written to the bus", registry=r
        )
        self.lost = Counter(
            "s2st_capture_buffer_dropped_chunks",
            "Chunks dropped from the full buffer while Redis was unreachable (lost)",
            registry=r,
        )
        self.lost_s = Counter(
            "s2st_capture_buffer_dropped_seconds",
            "Audio dropped from the full buffer while Redis was unreachable (lost)",
            registry=r,
        )
        self.outages = Counter(
            "s2st_capture_redis_outages", "Times the connection to Redis was lost", registry=r
        )
        self.redis_up = Gauge(
            "s2st_capture_redis_up", "1 while Redis answers the publisher, else 0", registry=r
        )
        self._seen = CaptureStats()
        self._seen_publish = (0, 0, 0, 0)  # published, dropped, dropped samples, outages

    def update(self, stats: CaptureStats, publish: PublishStats | None = None) -> None:
        seen = self._seen
        rate = stats.rate
        self.level.set(stats.level_dbfs)
        self.prob.set(stats.speech_prob)
        self.speaking.set(1 if stats.vad_state == "speech" else 0)
        if stats.progress is not None:
            self.progress.set(stats.progress)
        self.audio_in.inc(max(0, stats.samples_in - seen.samples_in) / rate)
        self.audio_sent.inc(max(0, stats.samples_sent - seen.samples_sent) / rate)
        self.audio_dropped.inc(max(0, stats.samples_dropped - seen.samples_dropped) / rate)
        self.chunks.inc(max(0, stats.chunks_sent - seen.chunks_sent))
        self.utterances.inc(max(0, stats.utterances - seen.utterances))
        self.overflows.inc(max(0, stats.overflows - seen.overflows))
        self._seen = replace(stats)  # a copy: the counters as of now
        if publish is not None:
            self._update_publish(publish)

    def _update_publish(self, p: PublishStats) -> None:
        published, dropped, dropped_samples, outages = self._seen_publish
        self.published.inc(max(0, p.published - published))
        self.lost.inc(max(0, p.dropped - dropped))
        self.lost_s.inc(max(0, p.dropped_samples - dropped_samples) / p.rate)
        self.outages.inc(max(0, p.outages - outages))
        self.buffered.set(p.buffered)
        self.buffered_s.set(p.buffered_s)
        self.redis_up.set(1 if p.redis_up else 0)
        self._seen_publish = (p.published, p.dropped, p.dropped_samples, p.outages)

    def value(self, name: str) -> float | None:
        """A sample's current value by its exposed name (for tests and reports)."""
        return self.registry.get_sample_value(name)
