"""The whole capture chain on real speech: sentence finding, silence, formats, timing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf

from capture_agent.audio_io import load_audio
from capture_agent.clock import ManualClock
from capture_agent.pipeline import CaptureConfig, CaptureProcessor
from capture_agent.sources import AudioBlock, FileSource

LJ_CONTINUOUS = "ljspeech_LJ001-0001_to_0032_continuous"
DEV_CLIP = "ljspeech_LJ001-0001"
NOISY = "extra_test"
RATE = 16000


def spans(processor: CaptureProcessor) -> list[tuple[float, float]]:
    return [(e.speech_start / RATE, e.speech_end / RATE) for e in processor.stats.recent_utterances]


@pytest.mark.slow
def test_vad_finds_the_sentences_of_the_continuous_clip(clip, manifest):
    """32 sentences joined by 0.3 s pauses; the 400 ms default would (rightly) keep them
    together, so the end-of-utterance silence is set below the pause length here."""
    segments = manifest[LJ_CONTINUOUS]["segments"]
    processor = CaptureProcessor(CaptureConfig(min_silence_ms=250, max_utterance_ms=60000))
    chunks = list(processor.run(FileSource(clip(LJ_CONTINUOUS), realtime=False)))
    found = spans(processor)
    starts = np.array([s for s, _ in found])
    ends = np.array([e for _, e in found])
    start_errors = [np.min(np.abs(starts - seg["start"])) for seg in segments]
    end_errors = [np.min(np.abs(ends - seg["end"])) for seg in segments]
    assert sum(e <= 0.3 for e in start_errors) >= 30, np.round(start_errors, 2)
    assert sum(e <= 0.3 for e in end_errors) >= 30, np.round(end_errors, 2)
    # the pauses between sentences are not speech
    gaps = [(a["end"] + b["start"]) / 2 for a, b in itertools.pairwise(segments)]
    in_speech = [g for g in gaps if any(s <= g <= e for s, e in found)]
    assert len(in_speech) <= 1, in_speech
    # every utterance is announced and closed in the chunk stream
    starts_flagged = [c.utterance for c in chunks if c.utt_start]
    ends_flagged = [c.utterance for c in chunks if c.utt_end]
    assert starts_flagged == ends_flagged == list(range(processor.stats.utterances))


def _silent_runs(audio: np.ndarray, floor_db: float = -40.0, min_s: float = 0.5):
    frames = audio[: len(audio) // 512 * 512].reshape(-1, 512)
    quiet = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12) < floor_db
    runs, i = [], 0
    while i < len(quiet):
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < len(quiet) and quiet[j]:
            j += 1
        if (j - i) * 512 / RATE >= min_s:
            runs.append((i * 512 / RATE, j * 512 / RATE))
        i = j
    return runs


@pytest.mark.slow
def test_noisy_recording_does_not_fire_on_silence(clip):
    audio = load_audio(clip(NOISY))
    runs = _silent_runs(audio)
    assert len(runs) >= 8  # the recording has pauses between phrases
    processor = CaptureProcessor()
    chunks = list(processor.run(FileSource(clip(NOISY), realtime=False)))
    found = spans(processor)
    assert processor.stats.utterances >= 5
    margin = 0.1
    for a, b in runs:  # no utterance starts in the middle of a pause
        assert not any(a + margin < s < b - margin for s, _ in found), (a, b)
    # pauses of a second or more are not sent, apart from the padding around speech
    sent = [(c.offset / RATE, (c.offset + c.samples) / RATE) for c in chunks]
    long_runs = [(a, b) for a, b in runs if b - a >= 1.0]
    assert len(long_runs) >= 3
    for a, b in long_runs:
        inside = sum(max(0.0, min(b, e) - max(a, s)) for s, e in sent)
        assert inside <= 0.95, (a, b, inside)  # 320 + 192 ms pads + ending silence + a breath
    total_long = sum(b - a for a, b in long_runs)
    assert sum(max(0.0, min(b, e) - max(a, s)) for a, b in long_runs for s, e in sent) < (
        0.4 * total_long
    )
    # the longest pause alone (real room noise, 2.6 s): nothing is sent
    a, b = max(runs, key=lambda r: r[1] - r[0])
    alone = CaptureProcessor()
    chunks = alone.feed(AudioBlock(audio[int(a * RATE) : int(b * RATE)], 0.0)) + alone.flush()
    assert chunks == [] and alone.stats.utterances == 0


def _chunk_layout(chunks):
    return [
        (c.seq, c.utterance, c.offset, c.samples, c.utt_start, c.utt_end, c.vad) for c in chunks
    ]


@pytest.mark.parametrize("kind, min_snr", [("wav", 25.0), ("mp3", 20.0)])
def test_44k_stereo_gives_the_same_chunks_as_16k_mono_flac(clip, stereo_44k, snr_db, kind, min_snr):
    reference = list(CaptureProcessor().run(FileSource(clip(DEV_CLIP), realtime=False)))
    converted = list(CaptureProcessor().run(FileSource(stereo_44k[kind], realtime=False)))
    assert len(reference) >= 15
    assert _chunk_layout(converted) == _chunk_layout(reference)
    for ref, conv in zip(reference, converted, strict=True):
        if ref.samples:  # each chunk: the same audio up to the resampler's band edge
            assert snr_db(ref.audio(), conv.audio()) > min_snr - 8
        assert conv.speech_prob == pytest.approx(ref.speech_prob, abs=0.1)
    sent_ref = np.concatenate([c.audio() for c in reference])
    sent_conv = np.concatenate([c.audio() for c in converted])
    assert snr_db(sent_ref, sent_conv) > min_snr


def test_realtime_file_chunks_have_exact_sequence_and_times(clip):
    clock = ManualClock(wall_start=1_800_000_000.0)
    source = FileSource(clip(DEV_CLIP), realtime=True, clock=clock)
    chunks = list(CaptureProcessor().run(source))
    duration = len(load_audio(clip(DEV_CLIP))) / RATE
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.capture_start == pytest.approx(1_800_000_000.0 + c.offset / RATE, abs=1e-6)
        if c.samples:
            end = 1_800_000_000.0 + (c.offset + c.samples - 1) / RATE
            assert c.capture_end == pytest.approx(end, abs=1e-6)
            assert c.samples <= 8000
    full = [c for c in chunks if c.samples == 8000]
    assert len(full) >= len(chunks) - 3
    # paced: the (fake) clock advanced by the audio's duration, in 32 ms steps
    assert clock.monotonic() == pytest.approx(duration, abs=1e-6)
    assert max(clock.sleeps) <= 0.032 + 1e-9


def test_send_all_reproduces_the_source_exactly(clip, tmp_path):
    speech, _ = sf.read(clip(DEV_CLIP), dtype="int16")
    raw = np.concatenate([np.zeros(RATE, np.int16), speech])  # a second of silence first
    path = tmp_path / "with-silence.wav"
    sf.write(str(path), raw, RATE, subtype="PCM_16")
    processor = CaptureProcessor(CaptureConfig(send_all=True))
    chunks = list(processor.run(FileSource(path, realtime=False)))
    assert b"".join(c.pcm for c in chunks) == raw.astype("<i2").tobytes()
    assert processor.stats.samples_dropped == 0
    assert chunks[0].vad == "silence" and {c.vad for c in chunks} == {"speech", "silence"}


def test_dropping_silence_keeps_offsets_on_the_source_timeline(clip):
    audio = load_audio(clip(DEV_CLIP))
    padded = np.concatenate([np.zeros(3 * RATE, np.float32), audio, np.zeros(3 * RATE, np.float32)])
    processor = CaptureProcessor()
    chunks = processor.feed(AudioBlock(padded, 100.0)) + processor.flush()
    assert chunks[0].offset >= 3 * RATE - 8000  # the 3 s of digital silence were not sent
    for c in chunks:
        original = padded[c.offset : c.offset + c.samples]
        assert np.max(np.abs(c.audio() - original)) <= 1 / 32768 + 1e-7
        assert c.capture_start == pytest.approx(100.0 + c.offset / RATE)
    assert processor.stats.samples_dropped >= 5 * RATE
    assert processor.stats.samples_sent + processor.stats.samples_dropped == len(padded)
    assert processor.stats.samples_in == len(padded)


def test_a_restarted_agent_continues_the_session_numbering(clip):
    config = CaptureConfig(first_seq=41, first_utterance=7, first_offset=123_456)
    chunks = list(CaptureProcessor(config).run(FileSource(clip(DEV_CLIP), realtime=False)))
    plain = list(CaptureProcessor().run(FileSource(clip(DEV_CLIP), realtime=False)))
    assert [c.seq for c in chunks] == [41 + c.seq for c in plain]
    assert [c.utterance for c in chunks] == [7 + c.utterance for c in plain]
    assert [c.offset for c in chunks] == [123_456 + c.offset for c in plain]
