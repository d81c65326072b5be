"""The utterance state machine: which frames to send, and where utterances start and end.

It works on 32 ms frames that already carry their speech probability:

- idle: the last `pre_pad + min_speech` frames wait in a ring; older ones are dropped (or
  sent as silence with `send_all`). `min_speech` consecutive frames at or above
  `threshold` start an utterance, which begins `pre_pad` before its first voiced frame so
  the first word is not clipped.
- speech: frames are sent at once. After the last voiced frame, `post_pad` of silence is
  still sent; silence beyond that is held back. A voiced frame releases what was held (the
  pause was inside the utterance); `min_silence` of silence (frames below
  `neg_threshold`) ends the utterance, and the held frames go back to the idle ring.
- an utterance longer than `max_utterance` ends at its next silent frame, and is cut
  outright at 1.5 x `max_utterance`.

Hysteresis as in Silero's own iterator: a frame at or above `threshold` is speech, below
`neg_threshold` is silence, in between continues whatever was going on.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

NO_UTTERANCE = -1  # the utterance id of silence sent between utterances (send_all)


@dataclass(frozen=True)
class Frame:
    offset: int  # session sample offset of samples[0]
    samples: np.ndarray  # float32, usually 512
    prob: float  # speech probability
    time: float  # wall-clock capture time of samples[0] (epoch seconds)

    @property
    def end(self) -> int:
        return self.offset + len(self.samples)


@dataclass(frozen=True)
class SegmenterConfig:
    rate: int = 16000
    frame_samples: int = 512
    threshold: float = 0.5
    neg_threshold: float | None = None  # default: threshold - 0.15
    min_speech_ms: float = 64.0
    min_silence_ms: float = 400.0
    pre_pad_ms: float = 320.0
    post_pad_ms: float = 192.0
    max_utterance_ms: float = 20000.0
    send_all: bool = False

    def frames(self, ms: float) -> int:
        return max(0, math.ceil(ms * self.rate / 1000 / self.frame_samples - 1e-9))

    def samples(self, ms: float) -> int:
        return round(ms * self.rate / 1000)

    @property
    def negative(self) -> float:
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(0.01, self.threshold - 0.15)


@dataclass(frozen=True)
class Emit:
    """A frame to send; utterance is NO_UTTERANCE for silence between utterances."""

    frame: Frame
    utterance: int


@dataclass(frozen=True)
class UtteranceStart:
    utterance: int
    audio_start: int  # first sample sent for it (includes the pre-roll)
    speech_start: int  # first voiced frame
    time: float  # capture time of the first voiced frame


@dataclass(frozen=True)
class UtteranceEnd:
    utterance: int
    audio_end: int  # end (exclusive) of the last sample sent for it
    speech_start: int
    speech_end: int  # end of the last voiced frame
    forced: bool  # ended by the length limit before min_silence was reached


@dataclass(frozen=True)
class Drop:
    """A frame not sent (silence outside utterances)."""

    frame: Frame


SegmentEvent = Emit | UtteranceStart | UtteranceEnd | Drop


class Segmenter:
    def __init__(self, config: SegmenterConfig | None = None, first_utterance: int = 0) -> None:
        self.config = cfg = config or SegmenterConfig()
        self._min_speech = max(1, cfg.frames(cfg.min_speech_ms))
        self._pre_pad = cfg.frames(cfg.pre_pad_ms)
        self._post_pad = cfg.samples(cfg.post_pad_ms)
        self._min_silence = cfg.samples(cfg.min_silence_ms)
        self._max_utt = cfg.samples(cfg.max_utterance_ms)
        self._hard_max = int(self._max_utt * 1.5)
        self._negative = cfg.negative
        self.next_utterance = first_utterance
        self.in_speech = False
        self.utterance = NO_UTTERANCE
        self._ring: deque[Frame] = deque()
        self._voiced_run = 0
        self._held: list[Frame] = []
        self._audio_start = 0
        self._audio_end = 0
        self._speech_start = 0
        self._speech_end = 0
        self._silence_start: int | None = None

    # -- idle ------------------------------------------------------------------------

    def _release(self, frame: Frame, out: list[SegmentEvent]) -> None:
        out.append(Emit(frame, NO_UTTERANCE) if self.config.send_all else Drop(frame))

    def _trim_ring(self, out: list[SegmentEvent]) -> None:
        while len(self._ring) > self._pre_pad + self._min_speech:
            self._release(self._ring.popleft(), out)

    def _idle(self, frame: Frame, out: list[SegmentEvent]) -> None:
        self._ring.append(frame)
        self._voiced_run = self._voiced_run + 1 if frame.prob >= self.config.threshold else 0
        if self._voiced_run < self._min_speech:
            self._trim_ring(out)
            return
        frames = list(self._ring)
        first_voiced = len(frames) - self._voiced_run
        first_sent = max(0, first_voiced - self._pre_pad)
        self._ring.clear()
        for old in frames[:first_sent]:
            self._release(old, out)
        self.utterance = self.next_utterance
        self.next_utterance += 1
        self.in_speech = True
        self._voiced_run = 0
        self._held = []
        self._silence_start = None
        self._audio_start = frames[first_sent].offset
        self._speech_start = frames[first_voiced].offset
        self._speech_end = frame.end
        out.append(
            UtteranceStart(
                self.utterance, self._audio_start, self._speech_start, frames[first_voiced].time
            )
        )
        for sent in frames[first_sent:]:
            self._emit(sent, out)

    # -- speech ----------------------------------------------------------------------

    def _emit(self, frame: Frame, out: list[SegmentEvent]) -> None:
        out.append(Emit(frame, self.utterance))
        self._audio_end = frame.end

    def _speech(self, frame: Frame, out: list[SegmentEvent]) -> None:
        cfg = self.config
        if frame.prob >= cfg.threshold:
            self._silence_start = None
        elif frame.prob < self._negative and self._silence_start is None:
            self._silence_start = frame.offset
        if self._silence_start is None:
            self._speech_end = frame.end
            for held in self._held:
                self._emit(held, out)
            self._held = []
            self._emit(frame, out)
        elif frame.offset < self._speech_end + self._post_pad:
            self._emit(frame, out)
        else:
            self._held.append(frame)

        length = frame.end - self._audio_start
        silence = 0 if self._silence_start is None else frame.end - self._silence_start
        if silence >= self._min_silence:
            self._end(out, forced=False)
        elif length >= self._max_utt and self._silence_start is not None:
            self._end(out, forced=True)
        elif length >= self._hard_max:
            self._end(out, forced=True)

    def _end(self, out: list[SegmentEvent], forced: bool) -> None:
        out.append(
            UtteranceEnd(
                self.utterance,
                self._audio_end,
                self._speech_start,
                min(self._speech_end, self._audio_end),
                forced,
            )
        )
        self.in_speech = False
        self.utterance = NO_UTTERANCE
        self._ring.extend(self._held)
        self._held = []
        self._voiced_run = 0
        self._trim_ring(out)

    # -- public ----------------------------------------------------------------------

    def push(self, frame: Frame) -> list[SegmentEvent]:
        """Feed one frame; returns what to send, drop, start or end, in order."""
        out: list[SegmentEvent] = []
        if self.in_speech:
            self._speech(frame, out)
        else:
            self._idle(frame, out)
        return out

    def flush(self) -> list[SegmentEvent]:
        """End of stream: close an open utterance and release what is waiting."""
        out: list[SegmentEvent] = []
        if self.in_speech:
            self._end(out, forced=False)
        while self._ring:
            self._release(self._ring.popleft(), out)
        self._voiced_run = 0
        return out
