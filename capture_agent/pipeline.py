"""The capture agent's processing: source blocks -> VAD frames -> segmenter -> chunks.

`CaptureProcessor` is plain synchronous code with no I/O of its own: `feed()` a block,
get the finished chunks back; `flush()` at the end of the stream; `run(source)` does
both over an `AudioSource`. `stats` holds the figures the meter and the metrics show.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from capture_agent.audio_io import TARGET_RATE
from capture_agent.chunker import Chunk, Chunker
from capture_agent.segmenter import (
    Drop,
    Emit,
    Frame,
    Segmenter,
    SegmenterConfig,
    UtteranceEnd,
    UtteranceStart,
)
from capture_agent.sources import AudioBlock, AudioSource
from capture_agent.vad import FRAME_SAMPLES, VoiceActivityDetector, create_vad

SILENCE_DBFS = -100.0


@dataclass(frozen=True)
class CaptureConfig(SegmenterConfig):
    """The segmentation (:class:`SegmenterConfig`'s fields, at 16 kHz in the VAD's frames),
    the VAD backend, the chunk length, and where a continued session resumes."""

    chunk_ms: float = 500.0
    vad_backend: str = "lite"
    # to continue a session after a restart of the agent: the next chunk seq, utterance id
    # and session sample offset (what the last published chunk implies)
    first_seq: int = 0
    first_utterance: int = 0
    first_offset: int = 0

    def __post_init__(self) -> None:
        if (self.rate, self.frame_samples) != (TARGET_RATE, FRAME_SAMPLES):
            raise ValueError(f"capture segments {TARGET_RATE} Hz audio in {FRAME_SAMPLES}-sample "
                             f"frames, not {self.rate} Hz in {self.frame_samples}")

    def segmenter_config(self) -> SegmenterConfig:
        return SegmenterConfig(**{f.name: getattr(self, f.name) for f in fields(SegmenterConfig)})


@dataclass
class CaptureStats:
    samples_in: int = 0
    samples_sent: int = 0
    samples_dropped: int = 0
    chunks_sent: int = 0
    utterances: int = 0
    overflows: int = 0
    level_dbfs: float = SILENCE_DBFS  # RMS of the latest frame
    speech_prob: float = 0.0  # of the latest frame
    vad_state: str = "silence"  # "speech" while inside an utterance
    utterance: int = -1  # current utterance id, -1 outside
    total_samples: int | None = None  # of a file source, for a progress bar
    rate: int = TARGET_RATE
    # the last utterances ended, with their speech and audio boundaries (sample offsets)
    recent_utterances: deque[UtteranceEnd] = field(default_factory=lambda: deque(maxlen=2000))

    @property
    def seconds_in(self) -> float:
        return self.samples_in / self.rate

    @property
    def progress(self) -> float | None:
        if not self.total_samples:
            return None
        return min(1.0, self.samples_in / self.total_samples)


def level_dbfs(samples: np.ndarray) -> float:
    if len(samples) == 0:
        return SILENCE_DBFS
    rms = math.sqrt(float(np.dot(samples, samples)) / len(samples))
    return max(SILENCE_DBFS, 20 * math.log10(rms)) if rms > 0 else SILENCE_DBFS


class CaptureProcessor:
    def __init__(
        self, config: CaptureConfig | None = None, vad: VoiceActivityDetector | None = None
    ) -> None:
        self.config = cfg = config or CaptureConfig()
        self.vad = vad or create_vad(cfg.vad_backend)
        self.segmenter = Segmenter(cfg.segmenter_config(), first_utterance=cfg.first_utterance)
        self.chunker = Chunker(cfg.chunk_ms, TARGET_RATE, first_seq=cfg.first_seq)
        self.stats = CaptureStats()
        self._pending = np.zeros(0, dtype=np.float32)
        self._pending_time = 0.0
        self._offset = cfg.first_offset  # session offset of _pending[0]

    def _frame(self, samples: np.ndarray, time: float) -> list[Chunk]:
        if len(samples) == FRAME_SAMPLES:
            prob = self.vad.probability(samples)
        else:  # the last, partial frame of a stream
            padded = np.zeros(FRAME_SAMPLES, dtype=np.float32)
            padded[: len(samples)] = samples
            prob = self.vad.probability(padded)
        frame = Frame(self._offset, samples, prob, time)
        self._offset += len(samples)
        stats = self.stats
        stats.samples_in += len(samples)
        stats.level_dbfs = level_dbfs(samples)
        stats.speech_prob = prob
        events = self.segmenter.push(frame)
        for event in events:
            if isinstance(event, Emit):
                stats.samples_sent += len(event.frame.samples)
            elif isinstance(event, Drop):
                stats.samples_dropped += len(event.frame.samples)
            elif isinstance(event, UtteranceStart):
                stats.utterances += 1
            elif isinstance(event, UtteranceEnd):
                stats.recent_utterances.append(event)
        stats.vad_state = "speech" if self.segmenter.in_speech else "silence"
        stats.utterance = self.segmenter.utterance
        chunks = self.chunker.push(events)
        stats.chunks_sent += len(chunks)
        return chunks

    def feed(self, block: AudioBlock) -> list[Chunk]:
        """Add one block of 16 kHz mono float32 samples; returns the chunks completed."""
        self.stats.overflows += block.overflows
        samples = np.asarray(block.samples, dtype=np.float32)
        if len(samples) == 0:
            return []
        pending = len(self._pending)
        if pending == 0:
            self._pending_time = block.capture_time
            joined = samples
        else:
            joined = np.concatenate([self._pending, samples])
        out: list[Chunk] = []
        usable = len(joined) - len(joined) % FRAME_SAMPLES
        for start in range(0, usable, FRAME_SAMPLES):
            if start < pending:
                time = self._pending_time + start / TARGET_RATE
            else:
                time = block.capture_time + (start - pending) / TARGET_RATE
            out.extend(self._frame(joined[start : start + FRAME_SAMPLES], time))
        rest = joined[usable:]
        if len(rest):
            if usable >= pending:
                self._pending_time = block.capture_time + (usable - pending) / TARGET_RATE
            else:
                self._pending_time += usable / TARGET_RATE
        self._pending = rest.copy()
        return out

    def flush(self) -> list[Chunk]:
        """End of stream: process the partial last frame, end the open utterance."""
        out: list[Chunk] = []
        if len(self._pending):
            out.extend(self._frame(self._pending, self._pending_time))
            self._pending = np.zeros(0, dtype=np.float32)
        flushed_before = len(out)  # already counted by _frame
        events = self.segmenter.flush()
        for event in events:
            if isinstance(event, Emit):
                self.stats.samples_sent += len(event.frame.samples)
            elif isinstance(event, Drop):
                self.stats.samples_dropped += len(event.frame.samples)
            elif isinstance(event, UtteranceEnd):
                self.stats.recent_utterances.append(event)
        out.extend(self.chunker.push(events))
        out.extend(self.chunker.flush())
        self.stats.chunks_sent += len(out) - flushed_before
        self.stats.vad_state = "silence"
        self.stats.utterance = -1
        return out

    def run(self, source: AudioSource) -> Iterator[Chunk]:
        """Process a whole source; yields chunks as they complete."""
        self.stats.total_samples = source.total_samples
        try:
            for block in source:
                yield from self.feed(block)
            self.stats.overflows = max(self.stats.overflows, source.overflows)
            yield from self.flush()
        finally:
            source.close()
