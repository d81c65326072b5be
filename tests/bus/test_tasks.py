"""Stopping tasks whose cancellation can be lost (redis-py on Python 3.11)."""

from __future__ import annotations

import asyncio

from bus.tasks import cancel_and_wait


async def _swallows(times: int, ran: list[int]) -> None:
    """A loop that loses its first ``times`` cancellations, as a redis-py read can."""
    lost = 0
    while True:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if lost >= times:
                raise
            lost += 1
        ran.append(lost)


async def test_a_task_that_lost_its_cancellation_is_cancelled_again() -> None:
    ran: list[int] = []
    task = asyncio.create_task(_swallows(3, ran))
    await asyncio.sleep(0)
    stuck = await cancel_and_wait([task], timeout_s=5, retry_s=0.01)
    assert not stuck and task.cancelled() and ran == [1, 2, 3]


async def test_a_task_that_never_stops_is_reported_and_not_waited_for_ever() -> None:
    ran: list[int] = []
    task = asyncio.create_task(_swallows(10**9, ran), name="deaf")
    await asyncio.sleep(0)
    stuck = await cancel_and_wait([task], timeout_s=0.3, retry_s=0.01)
    assert stuck == {task} and not task.done() and len(ran) >= 2
    task.get_coro().close()  # type: ignore[union-attr]


async def test_exceptions_of_the_tasks_are_collected_not_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task]) == set()
