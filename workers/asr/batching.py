"""Decode the due buffers of many sessions together.

A worker that owns many sessions feeds their chunks with ``decode=False`` and then calls
:meth:`BatchScheduler.run`: every recognizer with a decode due contributes its buffer, the
buffers are decoded in batches of at most ``max_batch`` (one encoder, language detection,
generation and alignment call per batch; see :class:`~workers.asr.decoder.WhisperDecoder`),
and each result goes back to its recognizer. Buffers are sorted by length first so a batch
holds buffers of similar width (the encoder pads a batch to its widest member).

On a GPU, batches of 16-32 buffers cost little more than one; on a CPU, batching still
saves the per-call overhead, and the worker's skipping of decodes while chunks are queued
keeps latency from growing when it is overloaded.

:class:`DecodeScheduler` is the stage's glue around it: all model work on one thread, and the
sessions whose decode falls due while a batch runs decoded together in the next one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import Any, TypeVar

from .decoder import WhisperDecoder
from .streaming import PendingDecode, StreamingRecognizer, Update

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class BatchScheduler:
    def __init__(self, decoder: WhisperDecoder, *, max_batch: int = 16) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.decoder = decoder
        self.max_batch = max_batch
        self.batches = 0
        self.decoded = 0

    def run(self, recognizers: Mapping[K, StreamingRecognizer]) -> dict[K, list[Update]]:
        """Run every due decode; return the new updates per session key."""
        out: dict[K, list[Update]] = {}
        due: list[tuple[K, StreamingRecognizer, PendingDecode]] = []
        for key, rec in recognizers.items():
            if not rec.decode_due:
                continue
            pending = rec.prepare()
            if pending is None:  # gated (no speech) or an utterance that just ended
                ups = rec.decode_now()
                if ups:
                    out[key] = ups
                continue
            due.append((key, rec, pending))
        due.sort(key=lambda item: len(item[2].request.audio))
        for i in range(0, len(due), self.max_batch):
            group = due[i : i + self.max_batch]
            hyps = self.decoder.decode_batch([p.request for _, _, p in group])
            self.batches += 1
            self.decoded += len(group)
            for (key, rec, pending), hyp in zip(group, hyps, strict=True):
                ups = rec.apply(pending, hyp)
                if ups:
                    out.setdefault(key, []).extend(ups)
        return out


class DecodeScheduler:
    """Runs recognizer work on one thread; due decodes of many sessions go in one batch."""

    def __init__(self, batcher: BatchScheduler) -> None:
        self.batcher = batcher
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="asr")
        self._queue: dict[Any, tuple[StreamingRecognizer, asyncio.Future[list[Update]]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="asr-batches")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (anything touching a recognizer or the model) on the decoding thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    async def decode(self, key: Any, rec: StreamingRecognizer) -> list[Update]:
        fut: asyncio.Future[list[Update]] = asyncio.get_running_loop().create_future()
        self._queue[key] = (rec, fut)
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, {}
            if not batch:
                continue
            recognizers = {k: rec for k, (rec, _f) in batch.items()}
            try:
                results = await self.call(partial(self.batcher.run, recognizers))
            except Exception as exc:  # the sessions' handlers see it and retry
                for _rec, fut in batch.values():
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for key, (_rec, fut) in batch.items():
                if not fut.done():
                    fut.set_result(results.get(key, []))
