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
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

from .decoder import WhisperDecoder
from .streaming import PendingDecode, StreamingRecognizer, Update

K = TypeVar("K", bound=Hashable)


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
