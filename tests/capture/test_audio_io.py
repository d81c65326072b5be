"""Decoding: formats, downmix, a real resampler, and every kind of bad input file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from capture_agent.audio_io import (
    AudioInputError,
    decode_blocks,
    float_to_pcm16,
    load_audio,
    pcm16_to_float,
    probe_audio,
)

DEV_CLIP = "ljspeech_LJ001-0001"


def test_flac_16k_mono_is_read_unchanged(clip):
    path = clip(DEV_CLIP)
    raw, rate = sf.read(path, dtype="int16")
    assert rate == 16000
    audio = load_audio(path)
    assert audio.dtype == np.float32
    assert float_to_pcm16(audio) == raw.astype("<i2").tobytes()


@pytest.mark.parametrize("kind, min_snr", [("wav", 25.0), ("mp3", 20.0)])
def test_44k_stereo_matches_16k_mono(clip, stereo_44k, snr_db, kind, min_snr):
    reference = load_audio(clip(DEV_CLIP))
    info = probe_audio(stereo_44k[kind])
    assert (info.rate, info.channels) == (44100, 2)
    converted = load_audio(stereo_44k[kind])
    assert abs(len(converted) - len(reference)) <= 2
    # aligned in time: the best lag is 0 samples
    lags = range(-40, 41)
    seg = slice(16000, 64000)
    best = max(lags, key=lambda lag: float(np.dot(reference[seg], np.roll(converted, -lag)[seg])))
    assert best == 0
    assert snr_db(reference, converted) > min_snr


def test_resampling_is_band_limited_not_decimation(tmp_path):
    """A 12 kHz tone at 44.1 kHz is above the 8 kHz Nyquist limit: a resampler removes it,
    dropping samples would alias it to an audible 4 kHz tone."""
    rate = 44100
    t = np.arange(rate) / rate
    tone_1k = 0.5 * np.sin(2 * np.pi * 1000 * t)
    tone_12k = 0.5 * np.sin(2 * np.pi * 12000 * t)
    sf.write(tmp_path / "low.wav", tone_1k, rate, subtype="FLOAT")
    sf.write(tmp_path / "high.wav", tone_12k, rate, subtype="FLOAT")
    low = load_audio(tmp_path / "low.wav")[1000:-1000]
    high = load_audio(tmp_path / "high.wav")[1000:-1000]
    assert len(load_audio(tmp_path / "low.wav")) == 16000
    assert np.sqrt(np.mean(low**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert 20 * np.log10(np.sqrt(np.mean(high**2)) / 0.5 + 1e-12) < -60


def test_downmix_averages_channels(tmp_path):
    left = np.full(1600, 0.25, dtype=np.float32)
    right = np.full(1600, -0.75, dtype=np.float32)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    assert np.allclose(load_audio(tmp_path / "st.wav"), -0.25)


def test_ogg_and_ffmpeg_only_formats(clip, ffmpeg, tmp_path, snr_db):
    reference = load_audio(clip(DEV_CLIP))
    ogg = ffmpeg(clip(DEV_CLIP), tmp_path / "dev.ogg", "-c:a", "libvorbis", "-q:a", "8")
    m4a = ffmpeg(clip(DEV_CLIP), tmp_path / "dev.m4a", "-c:a", "aac", "-b:a", "128k")
    assert probe_audio(ogg).decoder == "soundfile"
    assert probe_audio(m4a).decoder == "ffmpeg"  # libsndfile cannot read AAC
    for path in (ogg, m4a):
        audio = load_audio(path)
        assert abs(len(audio) - len(reference)) < 2048  # AAC pads to whole frames
        assert snr_db(reference, audio) > 15


def test_blocks_are_streamed(clip):
    blocks = list(decode_blocks(clip(DEV_CLIP), block_frames=4096))
    assert len(blocks) > 30
    assert sum(map(len, blocks)) == len(load_audio(clip(DEV_CLIP)))


def test_pcm16_round_trip():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0], dtype=np.float32)
    pcm = float_to_pcm16(x)
    assert np.frombuffer(pcm, "<i2").tolist() == [0, 16384, -16384, 32767, -32768, 32767]
    assert pcm16_to_float(pcm)[1] == 0.5


# --- bad input: each gives AudioInputError with a one-line message naming the file ----


def _wav_header(rate: int, data_bytes: int, channels: int = 1) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def _bad_files(tmp_path: Path, clip) -> dict[str, tuple[Path, str]]:
    real = clip(DEV_CLIP).read_bytes()
    pcm = (np.sin(np.arange(16000) / 5) * 8000).astype("<i2").tobytes()
    files = {
        "missing": (tmp_path / "missing.wav", "no such file"),
        "empty": (tmp_path / "empty.wav", "empty file"),
        "not audio": (tmp_path / "notes.wav", "not a readable audio file"),
        "truncated flac": (tmp_path / "cut.flac", "truncated"),
        "truncated wav": (tmp_path / "cut.wav", "truncated"),
        "zero rate": (tmp_path / "zero.wav", "0 Hz"),
        "no samples": (tmp_path / "nothing.wav", "no audio samples"),
        "directory": (tmp_path / "adir", "not a regular file"),
        "nan samples": (tmp_path / "nan.wav", "NaN or infinite samples at 0.50 s"),
    }
    files["empty"][0].write_bytes(b"")
    files["not audio"][0].write_text("this is a text file, not audio\n" * 20)
    files["truncated flac"][0].write_bytes(real[: len(real) // 3])
    files["truncated wav"][0].write_bytes(_wav_header(16000, len(pcm)) + pcm[: len(pcm) // 2])
    files["zero rate"][0].write_bytes(_wav_header(0, len(pcm)) + pcm)
    files["no samples"][0].write_bytes(_wav_header(16000, 0))
    files["directory"][0].mkdir()
    corrupt = np.zeros((16000, 2), dtype=np.float32)
    corrupt[8000, 1] = np.nan
    sf.write(str(files["nan samples"][0]), corrupt, 16000, subtype="FLOAT")
    return files


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "not audio",
        "truncated flac",
        "truncated wav",
        "zero rate",
        "no samples",
        "directory",
        "nan samples",
    ],
)
def test_bad_input_is_one_line_error(tmp_path, clip, case):
    path, reason = _bad_files(tmp_path, clip)[case]
    with pytest.raises(AudioInputError) as err:
        load_audio(path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert reason in message


def test_truncated_mp3_is_detected(stereo_44k, tmp_path):
    data = stereo_44k["mp3"].read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 4])
    with pytest.raises(AudioInputError, match="truncated"):
        load_audio(cut)
