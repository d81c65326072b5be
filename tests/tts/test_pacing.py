"""Keeping up with a speaker who does not stop: the pace controller and the voices' speed
(the worker speeding up when its listener falls behind is in test_worker.py)."""

from __future__ import annotations

from typing import Any

import pytest

from workers.tts.config import TtsConfig
from workers.tts.pacing import PaceConfig, Pacer, SynthesisCost

SENTENCE = "The committee will meet again next week to discuss the budget for the new hall."


def test_the_voice_speeds_up_in_proportion_to_the_lag() -> None:
    pacer = Pacer(PaceConfig(target_lag_s=2.0, horizon_s=4.0, max_speed=1.4, late_s=6.0))
    assert pacer.plan(source_end=100.0, now=101.0).speed == 1.0  # 1 s behind: own pace
    half = pacer.plan(source_end=100.0, now=104.0)  # 4 s: halfway through the horizon
    assert half.speed == pytest.approx(1.2) and not half.late and half.lag_s == pytest.approx(4)
    assert pacer.plan(source_end=100.0, now=106.5).speed == pytest.approx(1.4)
    assert pacer.plan(source_end=100.0, now=106.5).late
    # what was written but not yet heard counts: the listener is still 5 s behind
    pacer.written(5.0, at=101.0)
    assert pacer.heard_until == 106.0
    assert pacer.plan(source_end=102.0, now=101.5).speed == pytest.approx(1.2)
    pacer.written(1.0, at=110.0)  # after a silence, the clock starts again from now
    assert pacer.heard_until == 111.0


def test_a_segment_that_would_outlast_its_source_is_said_faster_at_once() -> None:
    pacer = Pacer(PaceConfig(target_lag_s=2.0, horizon_s=4.0, max_speed=1.5))
    assert pacer.plan(10.0, 10.5, source_start=7.0, chars=60).fit is None  # nothing learned
    pacer.written(3.0, at=10.5, chars=40, speed=1.0)  # this voice: 0.075 s per character
    pacer.written(3.0, at=13.5, chars=40, speed=1.2)  # at 1.2x: 0.09 s at its own pace
    assert pacer.seconds_per_char == pytest.approx(0.075 + 0.3 * 0.015)
    # 60 characters (about 4.8 s to say) for 4 s of source, the listener not behind
    pace = pacer.plan(20.0, 20.5, source_start=16.0, chars=60)
    assert pace.lag_s == pytest.approx(0.5) and pace.fit == pytest.approx(60 * 0.0795 / 4)
    assert pace.speed == pytest.approx(pace.fit, abs=1e-3)
    # a short one fits at the voice's own pace; never slower than that
    assert pacer.plan(30.0, 30.5, source_start=26.0, chars=20).speed == 1.0
    # and never faster than the maximum
    assert pacer.plan(40.0, 40.5, source_start=39.0, chars=90).speed == 1.5


def test_pace_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="maximum speed"):
        PaceConfig(max_speed=3.0)
    with pytest.raises(ValueError, match="horizon"):
        PaceConfig(horizon_s=0)
    config = TtsConfig.from_env({"S2ST_TTS_MAX_SPEED": "1.2", "S2ST_TTS_LATE_S": "0"})
    assert config.pace.max_speed == 1.2 and config.pace.late_s == 0.0
    with pytest.raises(ValueError, match="MAX_SPEED"):
        TtsConfig.from_env({"S2ST_TTS_MAX_SPEED": "0.5"})


@pytest.mark.parametrize("voice", ["espeak", "piper"])
def test_a_faster_voice_says_the_same_in_less_time(voice: str, request: Any) -> None:
    synth = request.getfixturevalue(voice)
    normal = synth.synthesize(SENTENCE, "en")
    fast = synth.synthesize(SENTENCE, "en", speed=1.4)
    assert 0.6 < fast.duration / normal.duration < 0.85, (normal.duration, fast.duration)


def test_a_voice_running_cost_follows_its_pieces_and_relaxes_when_passed_over() -> None:
    cost = SynthesisCost()
    assert cost.predict("es", "kokoro", chars=30) is None  # not measured: no opinion
    # Kokoro here: 0.8 s for 20 characters at its own pace, 1.45 s of audio
    cost.observe("es", "kokoro", chars=20, speed=1.0, synth_s=0.8, audio_s=1.45)
    normal = cost.predict("es", "kokoro", chars=30)
    assert normal is not None and 0.8 < normal < 2.5  # longer piece, longer wait
    faster = cost.predict("es", "kokoro", chars=30, speed=1.5)
    assert faster is not None and faster < normal  # a faster pace makes less audio
    cost.observe("es", "kokoro", chars=20, speed=1.0, synth_s=4.8, audio_s=1.45)  # a busy spell
    busy = cost.predict("es", "kokoro", chars=30)
    rtf = cost.rtf("es", "kokoro")
    assert busy is not None and busy > 2 * normal and rtf is not None and rtf > 1.5
    for _ in range(100):  # passed over again and again: down to half its last measure
        cost.passed_over("es", "kokoro")
    relaxed = cost.predict("es", "kokoro", chars=30)
    assert relaxed == pytest.approx(busy / 2)
    assert cost.rtf("es", "kokoro") == pytest.approx(rtf / 2)
    cost.passed_over("es", "espeak")  # never measured: nothing to relax
    assert cost.predict("es", "espeak", chars=30) is None
