"""Chunks: fixed length, exact sequence/offsets/timing, never across an utterance."""

from __future__ import annotations

import numpy as np
import pytest

from capture_agent.chunker import Chunker
from capture_agent.segmenter import (
    NO_UTTERANCE,
    Emit,
    Frame,
    Segmenter,
    SegmenterConfig,
    UtteranceEnd,
    UtteranceStart,
)

F = 512
T0 = 1_700_000_000.0


def frame(i: int, prob: float = 0.9) -> Frame:
    samples = (np.arange(F, dtype=np.float32) + i * F) % 1000 / 4000.0
    return Frame(i * F, samples, prob, T0 + i * F / 16000)


def test_fixed_length_chunks_with_exact_offsets_and_times():
    chunker = Chunker(chunk_ms=500)
    events = [UtteranceStart(0, 0, 0, T0)] + [Emit(frame(i), 0) for i in range(40)]
    events.append(UtteranceEnd(0, 40 * F, 0, 40 * F, False))
    chunks = chunker.push(events)
    assert [c.seq for c in chunks] == [0, 1, 2]
    assert [c.offset for c in chunks] == [0, 8000, 16000]
    assert [c.samples for c in chunks] == [8000, 8000, 40 * F - 16000]
    assert [(c.utt_start, c.utt_end) for c in chunks] == [
        (True, False),
        (False, False),
        (False, True),
    ]
    for c in chunks:
        assert c.capture_start == pytest.approx(T0 + c.offset / 16000, abs=1e-9)
        assert c.capture_end == pytest.approx(T0 + (c.offset + c.samples - 1) / 16000, abs=1e-9)
        assert len(c.pcm) == 2 * c.samples
    joined = np.concatenate([c.audio() for c in chunks])
    expected = np.concatenate([frame(i).samples for i in range(40)])
    assert np.max(np.abs(joined - expected)) < 1 / 32768 + 1e-7


def test_chunk_never_spans_two_utterances():
    seg = Segmenter(
        SegmenterConfig(
            min_speech_ms=32, min_silence_ms=96, pre_pad_ms=0, post_pad_ms=0, send_all=True
        )
    )
    chunker = Chunker(chunk_ms=500)
    probs = [0.9] * 7 + [0.0] * 5 + [0.9] * 7 + [0.0] * 5
    chunks = []
    for i, p in enumerate(probs):
        chunks += chunker.push(seg.push(frame(i, p)))
    chunks += chunker.push(seg.flush()) + chunker.flush()
    assert [c.utterance for c in chunks] == [0, NO_UTTERANCE, 1, NO_UTTERANCE]
    assert [c.vad for c in chunks] == ["speech", "silence", "speech", "silence"]
    # contiguous, nothing lost or repeated
    assert [c.offset for c in chunks] == [0, 7 * F, 12 * F, 19 * F]
    assert sum(c.samples for c in chunks) == len(probs) * F
    assert chunks[0].utt_end and chunks[2].utt_start and chunks[2].utt_end


def test_end_on_chunk_boundary_gives_empty_end_marker():
    chunker = Chunker(chunk_ms=64)  # 1024 samples = 2 frames
    events = [
        UtteranceStart(3, 0, 0, T0),
        Emit(frame(0), 3),
        Emit(frame(1), 3),
        UtteranceEnd(3, 2 * F, 0, 2 * F, False),
    ]
    chunks = chunker.push(events)
    assert [(c.samples, c.utt_end) for c in chunks] == [(1024, False), (0, True)]
    assert chunks[1].offset == 1024 and chunks[1].utterance == 3 and chunks[1].pcm == b""


def test_speech_prob_is_max_of_frames_and_seq_continues():
    chunker = Chunker(chunk_ms=64, first_seq=100)
    events = [
        UtteranceStart(0, 0, 0, T0),
        Emit(frame(0, 0.6), 0),
        Emit(frame(1, 0.95), 0),
        Emit(frame(2, 0.7), 0),
        UtteranceEnd(0, 3 * F, 0, 3 * F, False),
    ]
    chunks = chunker.push(events)
    assert [c.seq for c in chunks] == [100, 101]
    assert [c.speech_prob for c in chunks] == [0.95, 0.7]
