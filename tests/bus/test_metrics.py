"""A worker serves Prometheus metrics: events, handler time, leases, lag, dead letters."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

from bus_helpers import dead_letters, fast_settings, outputs, produce, register, wait_for
from prometheus_client.parser import text_string_to_metric_families

from bus.connection import connect
from bus.keys import Partition
from bus.stage import Delivery, Emit, PartitionContext
from bus.testing import RelayStage, delete_prefix, run_worker


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def _value(text: str, name: str, stage: str = "metricsstage") -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{stage="{stage}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_metrics_endpoint(local_redis: str) -> None:
    settings = fast_settings(local_redis, metrics_port=0)
    client: Any = await connect(settings)
    part = Partition("roomm", "s1")
    try:
        await register(client, settings.keys, [part], False)
        async with run_worker(RelayStage(name="metricsstage"), settings) as worker:
            await produce(client, settings.keys, part, range(7))

            async def seven() -> bool:
                return len(await outputs(client, settings.keys, part)) == 7

            await wait_for(seven)
            await asyncio.sleep(0.2)
            assert worker.metrics_port
            text = await asyncio.to_thread(_scrape, worker.metrics_port)
        assert _value(text, "s2st_events_in_total") == 7
        assert _value(text, "s2st_events_out_total") == 7
        assert _value(text, "s2st_leases_held") == 1
        assert _value(text, "s2st_handler_seconds_count") == 7
        assert 's2st_hop_seconds_bucket{le="0.005",stage="metricsstage"}' in text
    finally:
        await delete_prefix(client, settings.key_prefix)
        await client.aclose()


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``; None if it is not exported."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


class _GatedRelay(RelayStage):
    """A relay whose handler waits at seq 0 until the test opens the gate."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def handle(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        if delivery.event.seq == 0:
            self.entered.set()
            await self.gate.wait()
        return await super().handle(ctx, delivery)


async def test_lag_and_pending_gauges(local_redis: str) -> None:
    """s2st_group_lag counts entries of the owned streams the stage has not read yet and
    s2st_group_pending those read and not acknowledged; both follow the stream (the lag loop
    refreshes them every 5 s: this waits for two refreshes, about 10 s)."""
    stage_name = "lagstage"
    # one entry in flight per stream: while seq 0 is held, nothing more is read
    settings = fast_settings(local_redis, metrics_port=0, max_inflight=1)
    client: Any = await connect(settings)
    part = Partition("rooml", "s1")
    stage = _GatedRelay(stage_name)
    try:
        await register(client, settings.keys, [part], False)
        async with run_worker(stage, settings) as worker:
            assert worker.metrics_port
            port = worker.metrics_port
            await produce(client, settings.keys, part, range(1))
            await asyncio.wait_for(stage.entered.wait(), timeout=10)
            await produce(client, settings.keys, part, range(1, 8))  # 7 entries left unread

            async def gauges() -> tuple[float | None, float | None]:
                text = await asyncio.to_thread(_scrape, port)
                return (_sample(text, "s2st_group_lag", stage=stage_name),
                        _sample(text, "s2st_group_pending", stage=stage_name))

            seen: list[tuple[float | None, float | None]] = []

            async def until(want: tuple[float, float]) -> None:
                """Wait for the next refresh that shows ``want`` (lag, pending)."""

                async def shown() -> bool:
                    seen.append(await gauges())
                    return seen[-1] == want

                try:
                    await wait_for(shown, timeout=8, interval=0.1)
                except AssertionError:
                    raise AssertionError(f"(lag, pending) wanted {want}, seen "
                                         f"{sorted(set(seen), key=str)}") from None

            try:
                await until((7.0, 1.0))
                stage.gate.set()
                await wait_for(lambda: _count(client, settings, part, 8), timeout=5)
                await until((0.0, 0.0))
            finally:
                stage.gate.set()
    finally:
        await delete_prefix(client, settings.key_prefix)
        await client.aclose()


async def _count(client: Any, settings: Any, part: Partition, n: int) -> bool:
    return len(await outputs(client, settings.keys, part)) == n


async def test_dead_letter_counter(local_redis: str) -> None:
    """s2st_dead_letters_total counts each dead-lettered entry once, under its reason."""
    stage_name = "dlstage"
    settings = fast_settings(local_redis, metrics_port=0, max_event_bytes=1024)
    client: Any = await connect(settings)
    part = Partition("roomdl", "s1")
    key = settings.keys.stream("audio", part)
    try:
        await register(client, settings.keys, [part], False)
        await client.xadd(key, {"garbage": "1"})  # malformed
        await client.xadd(key, {"junk": "x" * 2048})  # oversized
        await produce(client, settings.keys, part, range(5))  # seq 2 fails every time
        async with run_worker(RelayStage(name=stage_name, fail_seqs={2}), settings) as worker:
            assert worker.metrics_port

            async def settled() -> bool:
                return (await _count(client, settings, part, 4)
                        and len(await dead_letters(client, settings.keys, part.room)) == 3)

            await wait_for(settled)
            await asyncio.sleep(0.2)
            text = await asyncio.to_thread(_scrape, worker.metrics_port)
        reasons = sorted(d.error.split(":")[0] for d in
                         await dead_letters(client, settings.keys, part.room))
        assert reasons == ["PoisonError", "malformed", "oversized"]
        name = "s2st_dead_letters_total"
        assert _sample(text, name, stage=stage_name, reason="failed") == 1
        assert _sample(text, name, stage=stage_name, reason="malformed") == 1
        assert _sample(text, name, stage=stage_name, reason="oversized") == 1
        exported = {s.labels["reason"] for f in text_string_to_metric_families(text)
                    for s in f.samples if s.name == name and s.labels["stage"] == stage_name}
        assert exported == {"failed", "malformed", "oversized"}
        assert _sample(text, "s2st_handler_failures_total",
                       stage=stage_name) == settings.max_attempts
        # the five entries that reached the stage count once each, the retried one too; what
        # was written: four outputs and three dead letters
        assert _sample(text, "s2st_events_in_total", stage=stage_name) == 5
        assert _sample(text, "s2st_events_out_total", stage=stage_name) == 7
    finally:
        await delete_prefix(client, settings.key_prefix)
        await client.aclose()


class _HealthRelay(RelayStage):
    """A relay that reports what the test sets as its health."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.report: dict[str, Any] = {}

    def health(self) -> dict[str, Any]:
        return dict(self.report)


async def test_stage_health_is_published_when_it_changes(local_redis: str) -> None:
    """``Stage.health`` goes to ``P:health:<stage>`` (for s2st status) at the heartbeat after
    it changes, records of workers no longer registered are removed then, and the worker's
    own goes when its health empties and when it stops."""
    import json

    settings = fast_settings(local_redis)
    client: Any = await connect(settings)
    key = settings.keys.health("healthstage")
    stage = _HealthRelay("healthstage")
    try:
        await client.hset(key, "w-gone", json.dumps({"old": 1}))  # a worker that died
        async with run_worker(stage, settings) as worker:
            await asyncio.sleep(3 * settings.heartbeat_ms / 1000)
            assert await client.hkeys(key) == [b"w-gone"]  # nothing to report: nothing written

            async def record() -> dict[bytes, bytes]:
                return dict(await client.hgetall(key))

            stage.report = {"unavailable": {"big": "no weights"}}
            await wait_for(lambda: _has(record, {worker.worker_id.encode()}))
            assert json.loads((await record())[worker.worker_id.encode()]) == stage.report
            stage.report = {"unavailable": {"big": "no weights"}, "skipped": {"en-de": 2}}
            await wait_for(lambda: _has_value(record, worker.worker_id, stage.report))
            stage.report = {}
            await wait_for(lambda: _has(record, set()))
            stage.report = {"no_route": {"en-de": "none"}}
            await wait_for(lambda: _has(record, {worker.worker_id.encode()}))
        assert await client.exists(key) == 0  # removed at stop
    finally:
        await delete_prefix(client, settings.key_prefix)
        await client.aclose()


async def _has(record: Any, fields: set[bytes]) -> bool:
    return set(await record()) == fields


async def _has_value(record: Any, worker_id: str, value: dict[str, Any]) -> bool:
    import json

    raw = (await record()).get(worker_id.encode())
    return raw is not None and json.loads(raw) == value
