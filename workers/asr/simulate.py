"""Computation-aware replay of a recording through streaming recognizers.

Chunks "arrive" at the audio time of their last sample (``chunk_s`` apart). A virtual clock
advances by the real wall time every feed/decode takes, and waits for the next arrival when
the recognizer is idle, so a word committed at clock time T after the chunk holding it
arrived has latency ``T - word_end``: exactly what a live listener would see, without
having to wait in real time. When decoding falls behind, the chunks that arrived meanwhile
are fed with ``decode=False`` and decoded once, as the worker does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .batching import BatchScheduler
from .decoder import SAMPLE_RATE
from .streaming import PcmBlock, StreamingRecognizer, Update
from .textnorm import normalize_word

CAPTURE_EPOCH = 1_700_000_000.0  # fake wall clock of sample 0 (any value works)


def make_chunks(
    audio: np.ndarray,
    *,
    chunk_s: float = 0.5,
    utterance: int = 0,
    offset: int = 0,
    epoch: float = CAPTURE_EPOCH,
    end: bool = True,
) -> list[PcmBlock]:
    """Cut float or int16 mono audio into chunk events of one utterance."""
    if audio.dtype != np.int16:
        audio = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    step = round(chunk_s * SAMPLE_RATE)
    if step <= 0:
        raise ValueError("chunk_s must be positive")
    chunks = []
    starts = list(range(0, len(audio), step))
    for k, a in enumerate(starts):
        piece = audio[a : a + step]
        first = offset + a
        chunks.append(
            PcmBlock(
                utterance=utterance,
                offset=first,
                audio=piece,
                capture_start=epoch + first / SAMPLE_RATE,
                capture_end=epoch + (first + len(piece) - 1) / SAMPLE_RATE,
                utt_start=k == 0,
                utt_end=end and k == len(starts) - 1,
                seq=k,
            )
        )
    return chunks


@dataclass
class StreamResult:
    """Everything a replay produced, with the virtual emission time of each update."""

    updates: list[tuple[float, Update]] = field(default_factory=list)
    compute_s: float = 0.0
    audio_s: float = 0.0
    origin_s: float = 0.0  # session time of the first chunk's first sample
    decodes: int = 0
    skipped_decodes: int = 0

    @property
    def committed(self) -> list[tuple[float, Update]]:
        return [(t, u) for t, u in self.updates if u.kind == "committed"]

    def committed_text(self) -> str:
        return " ".join(u.text for _, u in self.committed if u.text).strip()

    def word_latencies(self) -> list[float]:
        """Committed-word latency: emission time minus the word's end in the audio."""
        out = []
        for t, u in self.committed:
            for w in u.words:
                out.append(t - (w.end - self.origin_s))
        return out

    def partial_to_commit(self) -> list[float]:
        """For each committed word: time from its first appearance (unchanged) to its commit."""
        first_seen: dict[int, tuple[str, float]] = {}
        committed = 0
        delays: list[float] = []
        for t, u in self.updates:
            if u.kind == "partial":
                for k, w in enumerate(u.words):
                    key = normalize_word(w.text)
                    idx = committed + k
                    if idx not in first_seen or first_seen[idx][0] != key:
                        first_seen[idx] = (key, t)
                continue
            for w in u.words:
                seen = first_seen.get(committed)
                if seen is not None and seen[0] == normalize_word(w.text):
                    delays.append(t - seen[1])
                else:
                    delays.append(0.0)
                committed += 1
            first_seen = {k: v for k, v in first_seen.items() if k >= committed}
        return delays

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else 0.0


def replay(
    recognizer: StreamingRecognizer,
    chunks: Sequence[PcmBlock],
    *,
    chunk_s: float = 0.5,
    clock: Callable[[], float] = time.perf_counter,
) -> StreamResult:
    """Replay one session's chunks in computation-aware simulated real time."""
    result = StreamResult(
        audio_s=sum(c.samples for c in chunks) / SAMPLE_RATE,
        origin_s=chunks[0].offset / SAMPLE_RATE if chunks else 0.0,
    )
    arrivals = [(k + 1) * chunk_s for k in range(len(chunks))]
    now = 0.0
    i = 0
    while i < len(chunks):
        now = max(now, arrivals[i])
        j = i
        while j + 1 < len(chunks) and arrivals[j + 1] <= now:
            j += 1
        t0 = clock()
        updates: list[Update] = []
        for k in range(i, j + 1):
            updates += recognizer.feed(chunks[k], decode=k == j)
        spent = clock() - t0
        now += spent
        result.compute_s += spent
        result.updates += [(now, u) for u in updates]
        i = j + 1
    t0 = clock()
    tail = recognizer.end_utterance()
    spent = clock() - t0
    now += spent
    result.compute_s += spent
    result.updates += [(now, u) for u in tail]
    result.decodes = recognizer.decodes
    result.skipped_decodes = recognizer.skipped_decodes
    return result


def replay_many(
    scheduler: BatchScheduler,
    sessions: Mapping[str, tuple[StreamingRecognizer, Sequence[PcmBlock]]],
    *,
    chunk_s: float = 0.5,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, StreamResult]:
    """Replay several sessions served by one worker that batches their decodes."""
    results = {
        key: StreamResult(
            audio_s=sum(c.samples for c in chunks) / SAMPLE_RATE,
            origin_s=chunks[0].offset / SAMPLE_RATE if chunks else 0.0,
        )
        for key, (_, chunks) in sessions.items()
    }
    cursor = dict.fromkeys(sessions, 0)
    now = 0.0
    while any(cursor[k] < len(sessions[k][1]) for k in sessions):
        next_arrival = min(
            (cursor[k] + 1) * chunk_s for k in sessions if cursor[k] < len(sessions[k][1])
        )
        now = max(now, next_arrival)
        t0 = clock()
        produced: dict[str, list[Update]] = {k: [] for k in sessions}
        for key, (rec, chunks) in sessions.items():
            while cursor[key] < len(chunks) and (cursor[key] + 1) * chunk_s <= now:
                produced[key] += rec.feed(chunks[cursor[key]], decode=False)
                cursor[key] += 1
        for key, ups in scheduler.run({k: r for k, (r, _) in sessions.items()}).items():
            produced[key] += ups
        spent = clock() - t0
        now += spent
        for key, ups in produced.items():
            results[key].compute_s += spent / len(sessions)
            results[key].updates += [(now, u) for u in ups]
    for key, (rec, _) in sessions.items():
        results[key].decodes = rec.decodes
    return results
