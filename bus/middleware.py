"""Cross-cutting concerns of the runtime as middleware (metrics, logs).

Each hook is called by the runtime at one point of an entry's life; a
middleware overrides the hooks it cares about.  Hooks must be cheap and must
not raise.
"""

from __future__ import annotations

from typing import Any

from bus import clock, metrics
from bus.keys import Partition
from bus.logs import debug_enabled, get_logger
from bus.stage import Delivery, Emit


class Middleware:
    def on_acquire(self, stage: str, part: Partition) -> None: ...
    def on_release(self, stage: str, part: Partition, reason: str) -> None: ...
    def before_handle(self, stage: str, part: Partition, delivery: Delivery) -> None: ...
    def after_handle(self, stage: str, part: Partition, delivery: Delivery, emits: list[Emit],
                     seconds: float) -> None: ...
    def on_failure(self, stage: str, part: Partition, delivery: Delivery, error: BaseException,
                   attempts: int) -> None: ...
    def on_dead_letter(self, stage: str, part: Partition, entry_id: str, error: str,
                       reason: str) -> None: ...
    def after_commit(self, stage: str, written: int, duplicates: int, acked: int,
                     seconds: float) -> None: ...
    def on_trimmed(self, stage: str, part: Partition, entry_id: str) -> None: ...


class MetricsMiddleware(Middleware):
    """Prometheus counters and histograms (label children cached per stage: this runs per event)."""

    def __init__(self) -> None:
        self._children: dict[str, dict[str, Any]] = {}

    def _m(self, stage: str) -> dict[str, Any]:
        m = self._children.get(stage)
        if m is None:
            m = self._children[stage] = {
                "in": metrics.EVENTS_IN.labels(stage),
                "out": metrics.EVENTS_OUT.labels(stage),
                "hop": metrics.HOP_SECONDS.labels(stage),
                "handler": metrics.HANDLER_SECONDS.labels(stage),
                "e2e": metrics.E2E_SECONDS.labels(stage),
                "commit": metrics.COMMIT_SECONDS.labels(stage),
                "dups": metrics.DUPLICATES.labels(stage),
            }
        return m

    def on_acquire(self, stage: str, part: Partition) -> None:
        metrics.LEASES.labels(stage).inc()

    def on_release(self, stage: str, part: Partition, reason: str) -> None:
        metrics.LEASES.labels(stage).dec()
        if reason == "lost":
            metrics.LEASES_LOST.labels(stage).inc()

    def before_handle(self, stage: str, part: Partition, delivery: Delivery) -> None:
        if delivery.retry:
            return
        m = self._m(stage)
        m["in"].inc()
        if delivery.event.emitted:
            m["hop"].observe(max(0.0, delivery.t_in - delivery.event.emitted))

    def after_handle(self, stage: str, part: Partition, delivery: Delivery, emits: list[Emit],
                     seconds: float) -> None:
        m = self._m(stage)
        m["handler"].observe(seconds)
        if emits:
            now = clock.now()
            for emit in emits:
                if emit.event.capture_end:
                    m["e2e"].observe(max(0.0, now - emit.event.capture_end))

    def on_failure(self, stage: str, part: Partition, delivery: Delivery, error: BaseException,
                   attempts: int) -> None:
        metrics.FAILURES.labels(stage).inc()

    def on_dead_letter(self, stage: str, part: Partition, entry_id: str, error: str,
                       reason: str) -> None:
        metrics.DEAD_LETTERS.labels(stage, reason).inc()

    def after_commit(self, stage: str, written: int, duplicates: int, acked: int,
                     seconds: float) -> None:
        m = self._m(stage)
        m["out"].inc(written)
        if duplicates:
            m["dups"].inc(duplicates)
        m["commit"].observe(seconds)

    def on_trimmed(self, stage: str, part: Partition, entry_id: str) -> None:
        metrics.LOST_ENTRIES.labels(stage).inc()


class LoggingMiddleware(Middleware):
    def __init__(self) -> None:
        self.log = get_logger("s2st.runtime")

    def on_acquire(self, stage: str, part: Partition) -> None:
        self.log.info("stream acquired", stage=stage, room=part.room, session=part.session,
                      lang=part.lang)

    def on_release(self, stage: str, part: Partition, reason: str) -> None:
        log = self.log.warning if reason == "lost" else self.log.info
        log("stream released", stage=stage, room=part.room, session=part.session, lang=part.lang,
            reason=reason)

    def before_handle(self, stage: str, part: Partition, delivery: Delivery) -> None:
        if not debug_enabled():  # this runs per event
            return
        self.log.debug("handling", stage=stage, room=part.room, session=part.session,
                       seq=delivery.event.seq, entry=delivery.entry_id)

    def on_failure(self, stage: str, part: Partition, delivery: Delivery, error: BaseException,
                   attempts: int) -> None:
        self.log.warning("handler failed", stage=stage, room=part.room, session=part.session,
                         seq=delivery.event.seq, entry=delivery.entry_id, attempts=attempts,
                         error=f"{type(error).__name__}: {error}")

    def on_dead_letter(self, stage: str, part: Partition, entry_id: str, error: str,
                       reason: str) -> None:
        self.log.error("dead-lettered", stage=stage, room=part.room, session=part.session,
                       entry=entry_id, reason=reason, error=error)

    def on_trimmed(self, stage: str, part: Partition, entry_id: str) -> None:
        self.log.warning("pending entry was trimmed before it was handled", stage=stage,
                         room=part.room, session=part.session, entry=entry_id)


def default_middleware() -> list[Middleware]:
    return [MetricsMiddleware(), LoggingMiddleware()]
