"""The utterance state machine on scripted speech probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from capture_agent.segmenter import (
    NO_UTTERANCE,
    Drop,
    Emit,
    Frame,
    Segmenter,
    SegmenterConfig,
    UtteranceEnd,
    UtteranceStart,
)

F = 512


def frames(probs: list[float]) -> list[Frame]:
    return [
        Frame(i * F, np.full(F, i, dtype=np.float32), p, i * F / 16000) for i, p in enumerate(probs)
    ]


def run(probs: list[float], **cfg) -> list:
    seg = Segmenter(SegmenterConfig(**cfg))
    events = []
    for frame in frames(probs):
        events.extend(seg.push(frame))
    events.extend(seg.flush())
    return events


def sent(events, utterance=None) -> list[int]:
    return [
        e.frame.offset // F
        for e in events
        if isinstance(e, Emit) and (utterance is None or e.utterance == utterance)
    ]


CFG = dict(min_speech_ms=64, min_silence_ms=320, pre_pad_ms=96, post_pad_ms=64)


def test_start_needs_min_speech_and_sends_pre_roll():
    probs = [0.0] * 10 + [0.9] + [0.0] * 10 + [0.9, 0.9, 0.9] + [0.0] * 20
    events = run(probs, **CFG)
    starts = [e for e in events if isinstance(e, UtteranceStart)]
    assert len(starts) == 1  # the single voiced frame at 10 did not start one
    assert starts[0].speech_start == 21 * F
    assert starts[0].audio_start == 18 * F  # 96 ms = 3 frames of pre-roll
    assert sent(events, 0)[:4] == [18, 19, 20, 21]


def test_end_after_min_silence_with_post_pad_and_held_silence_dropped():
    probs = [0.9] * 5 + [0.0] * 30
    events = run(probs, **CFG)
    end = next(e for e in events if isinstance(e, UtteranceEnd))
    assert end.speech_end == 5 * F
    assert end.audio_end == 7 * F  # 64 ms = 2 frames of post-pad
    assert sent(events, 0) == [0, 1, 2, 3, 4, 5, 6]
    # the end is declared once 320 ms (10 frames) of silence have passed
    order = [type(e).__name__ for e in events]
    frames_before_end = order[: order.index("UtteranceEnd")].count("Emit") + order[
        : order.index("UtteranceEnd")
    ].count("Drop")
    assert frames_before_end == 7  # frames 7..14 were held, not yet dropped
    assert all(isinstance(e, Drop) for e in events[order.index("UtteranceEnd") + 1 :])


def test_short_pause_inside_utterance_is_sent_in_order():
    probs = [0.9] * 5 + [0.0] * 6 + [0.9] * 5 + [0.0] * 15
    events = run(probs, **CFG)
    assert sum(isinstance(e, UtteranceStart) for e in events) == 1
    assert sent(events, 0) == list(range(0, 18))  # pause frames released in order


def test_hysteresis_between_thresholds_keeps_speech():
    probs = [0.9] * 5 + [0.4] * 20 + [0.0] * 15  # 0.4 is above neg_threshold 0.35
    events = run(probs, **CFG)
    end = next(e for e in events if isinstance(e, UtteranceEnd))
    assert end.speech_end == 25 * F


def test_utterance_ids_count_up_and_silence_is_dropped():
    probs = ([0.9] * 5 + [0.0] * 30) * 3
    events = run(probs, **CFG)
    assert [e.utterance for e in events if isinstance(e, UtteranceStart)] == [0, 1, 2]
    assert [e.utterance for e in events if isinstance(e, UtteranceEnd)] == [0, 1, 2]
    dropped = sum(isinstance(e, Drop) for e in events)
    assert dropped + len(sent(events)) == len(probs)
    assert NO_UTTERANCE not in {e.utterance for e in events if isinstance(e, Emit)}


def test_send_all_sends_every_frame_once_in_order():
    probs = ([0.0] * 12 + [0.9] * 5 + [0.0] * 30) * 2
    events = run(probs, send_all=True, **CFG)
    assert sent(events) == list(range(len(probs)))
    assert not any(isinstance(e, Drop) for e in events)
    silence = [e for e in events if isinstance(e, Emit) and e.utterance == NO_UTTERANCE]
    assert silence and silence[0].frame.offset == 0


def test_long_utterance_ends_at_next_pause_or_is_cut():
    cfg = dict(CFG, max_utterance_ms=320)  # 10 frames
    soft = run([0.9] * 12 + [0.0] + [0.9] * 3 + [0.0] * 20, **cfg)
    first = next(e for e in soft if isinstance(e, UtteranceEnd))
    assert first.forced and first.audio_end == 13 * F
    hard = run([0.9] * 40, **cfg)
    ends = [e for e in hard if isinstance(e, UtteranceEnd)]
    assert ends[0].forced and ends[0].audio_end == 15 * F  # 1.5 x 10 frames
    assert len(ends) >= 2


def test_flush_closes_open_utterance():
    events = run([0.9] * 5, **CFG)
    assert isinstance(events[-1], UtteranceEnd)
    assert events[-1].audio_end == 5 * F


@pytest.mark.parametrize("ms, expected", [(400, 13), (192, 6), (32, 1), (0, 0)])
def test_ms_round_up_to_frames(ms, expected):
    assert SegmenterConfig().frames(ms) == expected
