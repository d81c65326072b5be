"""Latency the MT worker adds, on the local Redis with Apertium (a measurement, not a test).

    .venv/bin/python -m tests.mt.measure_worker

Feeds the 5 FLEURS and 20 LJ Speech English transcripts as 4-word committed pieces, one every
100 ms, into a session of a room with Spanish and Catalan listeners, and reports for the Spanish
stream how long the stage took from reading the piece that completed a span to making its
translation (the `mt` hop), and from that piece being written to the translation being written.
"""

from __future__ import annotations

import asyncio
import uuid

from bus.connection import connect
from bus.events import Translation, decode_event
from bus.keys import Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import end_marker, run_worker
from tests.conftest import load_manifest
from tests.mt.stream import bus_transcripts, committed_events, fleurs_rows, lj_rows
from workers.mt.config import MTSettings
from workers.mt.stage import MTStage

PIECE_INTERVAL_S = 0.1


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * p // 100)))
    return ordered[int(rank) - 1]


def _ms_of(entry_id: bytes) -> float:
    return int(entry_id.decode().split("-")[0]) / 1000


async def main() -> None:
    settings = BusSettings(key_prefix="measure" + uuid.uuid4().hex[:8], log_level="warning")
    r = await connect(settings)
    manifest = {row["id"]: row for row in load_manifest()}
    rows = fleurs_rows(manifest) + lj_rows(manifest, 20)
    events = bus_transcripts(committed_events(rows), "r1", "s1")
    registry = Registry(r, settings.keys)
    await registry.create_room("r1", ["es", "ca"])
    await registry.register_session("r1", "s1", "en")
    key = settings.keys.stream("transcript", Partition("r1", "s1"))
    written: dict[int, float] = {}
    try:
        async with run_worker(MTStage(MTSettings()), settings):
            await asyncio.sleep(1.0)
            for event in events:
                written[event.seq] = _ms_of(await r.xadd(key, event.to_fields()))
                await asyncio.sleep(PIECE_INTERVAL_S)
            await r.xadd(key, end_marker("r1", "s1", seq=len(events)).to_fields())
            await asyncio.sleep(3)
        hop: list[float] = []
        delay: list[float] = []
        out = settings.keys.stream("translation", Partition("r1", "s1", "es"))
        for entry_id, fields in await r.xrange(out):
            event = decode_event(fields)
            if isinstance(event, Translation) and event.kind == "committed":
                hop.append((event.trace[-1].t_out - event.trace[-1].t_in) * 1000)
                delay.append((_ms_of(entry_id) - written[event.src_seq]) * 1000)
        print(f"pieces {len(events)}, spans {len(hop)} (es and ca each)")
        print(f"mt hop, ms: p50 {percentile(hop, 50):.1f}  p95 {percentile(hop, 95):.1f}")
        print(f"last piece written -> translation written, ms: p50 {percentile(delay, 50):.1f}  "
              f"p95 {percentile(delay, 95):.1f}")
    finally:
        keys = [k async for k in r.scan_iter(match=settings.key_prefix + ":*")]
        if keys:
            await r.delete(*keys)
        await r.aclose()


if __name__ == "__main__":
    asyncio.run(main())
