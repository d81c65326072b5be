"""A worker run as its process's main work (the command line: ``run(handle_signals=True)``)."""

from __future__ import annotations

import asyncio
import gc

from bus.runtime import Worker
from bus.settings import BusSettings
from bus.testing import RelayStage


async def test_the_objects_its_start_made_are_frozen_out_of_full_collections(
        settings: BusSettings) -> None:
    # A full collection walks every tracked object (a loaded model's too) while every stream
    # waits: what the start made is moved out of its reach once.
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    worker = Worker(RelayStage(), settings)
    task = asyncio.create_task(worker.run(handle_signals=True))
    try:
        await asyncio.wait_for(worker.started.wait(), timeout=10)
        assert gc.get_freeze_count() > 1000
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)
        gc.unfreeze()
