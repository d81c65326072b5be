"""Output audio processing: rate, loudness, edges, PCM, on real recordings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import soundfile as sf

from workers.tts.audio import (
    OUTPUT_RATE,
    TARGET_DBFS,
    fade_edges,
    finish_piece,
    gated_rms_dbfs,
    normalize_loudness,
    resample,
    to_float,
    to_int16_bytes,
    trim_silence,
)


def _short_clips(manifest: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in manifest.values() if r.get("rms_dbfs") is not None and r["duration_s"] < 20]


def test_quiet_real_speech_is_brought_to_the_target_level(
    manifest: dict[str, dict[str, Any]],
) -> None:
    row = min(_short_clips(manifest), key=lambda r: abs(r["rms_dbfs"] - (TARGET_DBFS - 15)))
    audio, rate = sf.read(row["path"], dtype="float32")
    before = gated_rms_dbfs(audio, rate)
    assert before is not None and before < TARGET_DBFS - 8
    out = normalize_loudness(audio, rate)
    assert gated_rms_dbfs(out, rate) == pytest.approx(TARGET_DBFS, abs=1.0)
    assert np.max(np.abs(out)) <= 10 ** (-1 / 20) + 1e-6


def test_gain_is_capped_for_near_silent_recordings(manifest: dict[str, dict[str, Any]]) -> None:
    row = min(_short_clips(manifest), key=lambda r: r["peak_dbfs"])
    audio, rate = sf.read(row["path"], dtype="float32")
    level = gated_rms_dbfs(audio, rate)
    assert level is not None and level < TARGET_DBFS - 30
    gain = np.max(np.abs(normalize_loudness(audio, rate))) / np.max(np.abs(audio))
    assert 20 * np.log10(gain) == pytest.approx(30.0, abs=0.01)  # no more than +30 dB of noise


def test_loud_peaks_are_limited_not_clipped() -> None:
    rate = 24_000
    t = np.arange(rate) / rate
    tone = (0.05 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    tone[1000:1010] = 0.9  # a spike far above the speech level
    out = normalize_loudness(tone, rate)
    assert np.max(np.abs(out)) <= 10 ** (-1 / 20) + 1e-6
    assert gated_rms_dbfs(out, rate) == pytest.approx(TARGET_DBFS, abs=1.0)


def test_silence_is_left_alone() -> None:
    zeros = np.zeros(24_000, dtype=np.float32)
    assert gated_rms_dbfs(zeros, 24_000) is None
    assert np.array_equal(normalize_loudness(zeros, 24_000), zeros)


def test_fades_start_and_end_at_zero_without_touching_the_middle() -> None:
    x = np.ones(2400, dtype=np.float32) * 0.5
    y = fade_edges(x, 24_000)
    assert y[0] == 0 and y[-1] == 0
    assert np.all(np.diff(y[:150]) >= 0)
    assert np.array_equal(y[300:-300], x[300:-300])


def test_resampling_keeps_duration_and_pitch() -> None:
    rate = 22_050
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = resample(tone, rate, OUTPUT_RATE)
    assert abs(out.size - OUTPUT_RATE) <= 2
    spectrum = np.abs(np.fft.rfft(out))
    assert np.argmax(spectrum) * OUTPUT_RATE / out.size == pytest.approx(440, abs=2)
    with pytest.raises(ValueError):
        resample(tone, 0, OUTPUT_RATE)


def test_pcm_conversions_round_trip_and_clip() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.5, -1.5, np.nan], dtype=np.float32)
    data = to_int16_bytes(to_float(x))
    back = np.frombuffer(data, dtype="<i2")
    assert list(back) == [0, 16384, -16384, 32767, -32767, 0]
    assert to_float(back).dtype == np.float32
    with pytest.raises(TypeError):
        to_float(np.array(["a"]))


def test_finish_piece_trims_levels_fades_and_pads(manifest: dict[str, dict[str, Any]]) -> None:
    row = manifest["ljspeech_LJ001-0002"]
    audio, rate = sf.read(row["path"], dtype="float32")
    padded = np.concatenate([np.zeros(rate, np.float32), audio, np.zeros(rate, np.float32)])
    out = finish_piece(padded, rate, pause_s=0.25)
    assert trim_silence(out, OUTPUT_RATE).size < out.size  # the pause is at the end
    assert out.size < (audio.size / rate + 0.5) * OUTPUT_RATE  # the 2 s of padding went
    assert abs(out[0]) < 1e-3 and np.all(out[-int(0.25 * OUTPUT_RATE) :] == 0)
    assert gated_rms_dbfs(out, OUTPUT_RATE) == pytest.approx(TARGET_DBFS, abs=1.5)
