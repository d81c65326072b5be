"""Cutting what the segmenter sends into fixed-length chunks (the audio chunk events).

A chunk holds up to `chunk_ms` (default 500 ms) of contiguous samples of one utterance
(or of the silence between utterances, with send_all). A chunk never spans two
utterances: the chunk that reaches an utterance's end is cut short there and carries
`utt_end`. When that end falls exactly on a chunk boundary, an empty chunk (samples=0)
carries the `utt_end` mark, so every utterance's end is signalled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from capture_agent.audio_io import float_to_pcm16
from capture_agent.segmenter import (
    NO_UTTERANCE,
    Drop,
    Emit,
    Frame,
    SegmentEvent,
    UtteranceEnd,
    UtteranceStart,
)


@dataclass(frozen=True)
class Chunk:
    seq: int  # 0, 1, 2, ... over the chunks actually sent in this session
    utterance: int  # utterance id, NO_UTTERANCE (-1) for silence between utterances
    offset: int  # session sample offset of the first sample (counts dropped silence too)
    samples: int
    rate: int
    pcm: bytes = field(repr=False)  # int16 little-endian mono
    capture_start: float  # epoch seconds of the first sample
    capture_end: float  # epoch seconds of the last sample
    speech_prob: float  # max speech probability of the frames in the chunk
    vad: str  # "speech" inside an utterance, "silence" outside
    utt_start: bool
    utt_end: bool

    @property
    def duration_s(self) -> float:
        return self.samples / self.rate

    def audio(self) -> np.ndarray:
        """The chunk's samples as float32."""
        return np.frombuffer(self.pcm, dtype="<i2").astype(np.float32) / 32768.0


class _Open:
    """The chunk being filled."""

    def __init__(self, utterance: int, offset: int, time: float, utt_start: bool) -> None:
        self.utterance = utterance
        self.offset = offset
        self.start_time = time
        self.last_time = time
        self.utt_start = utt_start
        self.parts: list[np.ndarray] = []
        self.count = 0
        self.prob = 0.0

    @property
    def end(self) -> int:
        return self.offset + self.count


class Chunker:
    def __init__(self, chunk_ms: float = 500.0, rate: int = 16000, first_seq: int = 0) -> None:
        if chunk_ms <= 0:
            raise ValueError("chunk length must be positive")
        self.rate = rate
        self.chunk_samples = max(1, round(chunk_ms * rate / 1000))
        self.next_seq = first_seq
        self._open: _Open | None = None
        self._utt_start_pending = False
        self._last_time = 0.0  # capture time of the last sample seen

    def _close(self, out: list[Chunk], utt_end: bool = False) -> None:
        part = self._open
        if part is None:
            return
        self._open = None
        samples = np.concatenate(part.parts) if part.parts else np.zeros(0, np.float32)
        out.append(
            Chunk(
                seq=self.next_seq,
                utterance=part.utterance,
                offset=part.offset,
                samples=len(samples),
                rate=self.rate,
                pcm=float_to_pcm16(samples),
                capture_start=part.start_time,
                capture_end=part.last_time,
                speech_prob=round(part.prob, 4),
                vad="silence" if part.utterance == NO_UTTERANCE else "speech",
                utt_start=part.utt_start,
                utt_end=utt_end,
            )
        )
        self.next_seq += 1

    def _add(self, frame: Frame, utterance: int, out: list[Chunk]) -> None:
        current = self._open
        if current is not None and (current.utterance != utterance or current.end != frame.offset):
            self._close(out)
            current = None
        data = frame.samples
        pos = 0
        while pos < len(data):
            if self._open is None:
                start_time = frame.time + pos / self.rate
                self._open = _Open(
                    utterance,
                    frame.offset + pos,
                    start_time,
                    self._utt_start_pending and utterance != NO_UTTERANCE,
                )
                if utterance != NO_UTTERANCE:
                    self._utt_start_pending = False
            current = self._open
            take = min(len(data) - pos, self.chunk_samples - current.count)
            current.parts.append(data[pos : pos + take])
            current.count += take
            current.prob = max(current.prob, frame.prob)
            current.last_time = frame.time + (pos + take - 1) / self.rate
            self._last_time = current.last_time
            pos += take
            if current.count >= self.chunk_samples:
                self._close(out)

    def push(self, events: list[SegmentEvent]) -> list[Chunk]:
        """Turn segmenter events into finished chunks (in order)."""
        out: list[Chunk] = []
        for event in events:
            if isinstance(event, Emit):
                self._add(event.frame, event.utterance, out)
            elif isinstance(event, UtteranceStart):
                self._close(out)
                self._utt_start_pending = True
            elif isinstance(event, UtteranceEnd):
                if self._open is not None and self._open.utterance == event.utterance:
                    self._close(out, utt_end=True)
                else:
                    self._close(out)
                    self._end_marker(event, out)
            elif isinstance(event, Drop):
                pass
        return out

    def _end_marker(self, event: UtteranceEnd, out: list[Chunk]) -> None:
        out.append(
            Chunk(
                seq=self.next_seq,
                utterance=event.utterance,
                offset=event.audio_end,
                samples=0,
                rate=self.rate,
                pcm=b"",
                capture_start=self._last_time,
                capture_end=self._last_time,
                speech_prob=0.0,
                vad="speech",
                utt_start=False,
                utt_end=True,
            )
        )
        self.next_seq += 1

    def flush(self) -> list[Chunk]:
        """End of stream: the chunk being filled, if any."""
        out: list[Chunk] = []
        self._close(out)
        return out
