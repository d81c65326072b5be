"""A worker serves Prometheus metrics: events, handler time, leases, lag."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

from bus_helpers import fast_settings, outputs, produce, register, wait_for

from bus.connection import connect
from bus.keys import Partition
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
