"""Test and benchmark helpers shipped with the bus (like a stub broker).

* :class:`RelayStage`: a no-op stage that copies each input event to a stream
  of another family, optionally failing on chosen entries or sleeping; used by
  the bus tests, the SIGKILL test's worker subprocess and ``s2st bench bus``.
* :func:`make_chunk`: a small valid audio chunk event.
* :func:`run_worker`: run a Worker in the background of a test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from bus import clock
from bus.connection import connect
from bus.events import AudioChunk, ControlEvent, Event, Hop
from bus.runtime import Worker
from bus.settings import BusSettings
from bus.stage import Delivery, Emit, PartitionContext, Stage


class PoisonError(RuntimeError):
    """Raised by RelayStage for entries it was told to fail on."""


class RelayStage(Stage):
    """Copies every input event to ``output_family`` of the same session, unchanged
    but for a new hop in its trace.  End markers are forwarded too.

    ``fail_seqs``: seqs to raise on (a poison message); ``delay_s``: sleep per entry.
    """

    def __init__(self, name: str = "relay", input_family: str = "audio",
                 output_family: str = "relayed", *, fail_seqs: set[int] | None = None,
                 delay_s: float = 0.0, per_lang: bool = False) -> None:
        self.name = name
        self.input_family = input_family
        self.output_family = output_family
        self.fail_seqs = fail_seqs or set()
        self.delay_s = delay_s
        self.per_lang = per_lang
        self.handled = 0

    async def handle(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        event = delivery.event
        if event.seq in self.fail_seqs and not isinstance(event, ControlEvent):
            raise PoisonError(f"seq {event.seq} is poison")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.handled += 1
        out = ctx.stream(self.output_family, ctx.partition.lang)
        if delivery.is_end:
            return [Emit(out, ctx.end_marker(event, t_in=delivery.t_in), dedup=False)]
        copy = _with_hop(ctx, event, delivery.t_in)
        return [Emit(out, copy)]


def _with_hop(ctx: PartitionContext, event: Event, t_in: float) -> Event:
    hop = Hop(stage=ctx.stage, worker=ctx.worker_id, t_in=t_in, t_out=clock.now())
    return event.model_copy(update={"trace": [*event.trace, hop]})


def make_chunk(room: str, session: str, seq: int, *, samples: int = 160,
               capture_start: float | None = None) -> AudioChunk:
    t = clock.now() if capture_start is None else capture_start
    return AudioChunk(
        room=room, session=session, seq=seq, capture_start=t, capture_end=t + samples / 16000,
        utterance=0, offset=seq * samples, samples=samples, rate=16000, speech_prob=0.9,
        vad="speech", pcm=bytes(2 * samples), emitted=clock.now(),
    )


def hop(stage: str, t_in: float, t_out: float) -> Hop:
    """A hop of ``stage`` by its worker ``w-<stage>``."""
    return Hop(stage=stage, worker=f"w-{stage}", t_in=t_in, t_out=t_out)


def end_marker(room: str, session: str, seq: int = 0) -> ControlEvent:
    t = clock.now()
    return ControlEvent.end_of(room, session, at=t, seq=seq, reason="test", emitted=t)


async def delete_prefix(client: Any, prefix: str) -> int:
    """Delete every key under ``prefix`` (one DEL per key, so it works on a cluster too)."""
    deleted = 0
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        deleted += int(await client.delete(key))
    return deleted


@contextlib.asynccontextmanager
async def scratch_client(settings: BusSettings) -> AsyncIterator[Any]:
    """A connected client; every key under the settings' prefix is deleted afterwards."""
    client = await connect(settings)
    try:
        yield client
    finally:
        await delete_prefix(client, settings.key_prefix)
        await client.aclose()


@contextlib.asynccontextmanager
async def run_worker(stage: Stage, settings: BusSettings, client: Any = None,
                     **kw: Any) -> AsyncIterator[Worker]:
    """Run a worker in the background for the duration of the block, then stop it (sessions
    whose source went silent are ended on their ``audio`` stream unless ``root_family=`` or
    ``topology=`` says otherwise)."""
    if kw.get("topology") is None:
        kw.setdefault("root_family", "audio")
    worker = Worker(stage, settings, client=client, **kw)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.started.wait(), timeout=10)
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)
