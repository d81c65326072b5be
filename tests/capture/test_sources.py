"""Sources: drift-free real-time pacing, the microphone over a fake stream, stdin PCM."""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from capture_agent.audio_io import load_audio
from capture_agent.clock import ManualClock, Pacer, SystemClock
from capture_agent.pipeline import CaptureProcessor
from capture_agent.sources import (
    DeviceInfo,
    FileSource,
    MicrophoneError,
    MicrophoneSource,
    PushedSource,
    StdinSource,
    StreamBuffer,
    list_devices,
    resolve_device,
)
from tests.timing import met_in_one_run

DEV_CLIP = "ljspeech_LJ001-0001"
SHORT_CLIP = "ljspeech_LJ001-0002"
RATE = 16000


# --- pacing -------------------------------------------------------------------------


def test_pacer_holds_real_time_over_a_minute_despite_work_and_jitter():
    """One minute of 32 ms blocks, each costing 5 ms of 'work' plus random oversleep: the
    deadlines come from the start time, so the errors do not add up."""
    rng = np.random.default_rng(0)

    class JitteryClock(ManualClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds + float(rng.uniform(0, 0.004)))

    clock = JitteryClock(work_per_call=0.005)
    pacer = Pacer(clock, RATE)
    pacer.start()
    released = []
    for n in range(512, 60 * RATE + 1, 512):
        pacer.wait_until(n)
        released.append(clock.monotonic() - clock.work_per_call)
    elapsed = released[-1]
    assert elapsed == pytest.approx(60.0, rel=0.05)
    assert abs(elapsed - 60.0) < 0.02  # in fact within one block's jitter, not 5 %
    # never early: block k is released after its last sample's time
    assert all(t >= (k + 1) * 512 / RATE - 1e-9 for k, t in enumerate(released))


def test_pacer_does_not_catch_up_by_bursting_then_sleeping_again():
    clock = ManualClock()
    pacer = Pacer(clock, RATE)
    pacer.start()
    clock.advance(1.0)  # a one-second stall (e.g. the machine was busy)
    pacer.wait_until(RATE // 2)  # already late: no sleep
    assert clock.sleeps == []
    assert pacer.late_s == pytest.approx(0.5)
    pacer.wait_until(2 * RATE)
    assert clock.sleeps[-1] == pytest.approx(1.0)  # back on the absolute schedule


def test_real_clock_short_run_keeps_pace(clip):
    """A real 1.9 s file at real-time pace on the system clock: within 5 %.

    Never early, in every run (a busy machine can only make it later). Not more than 5 %
    late: that needs the CPU when a block is due, so it is met in one of up to three runs."""
    path = clip(SHORT_CLIP)
    duration = sf.info(str(path)).duration

    def run() -> tuple[float, float]:
        started = time.monotonic()
        blocks = list(FileSource(path, realtime=True, clock=SystemClock()))
        elapsed = time.monotonic() - started
        assert sum(len(b.samples) for b in blocks) == round(duration * RATE)
        assert elapsed > round(duration * RATE) / RATE - 1e-3, elapsed  # none released early
        started = time.monotonic()
        list(FileSource(path, realtime=False))
        return elapsed, time.monotonic() - started

    # within 5 % of the file's length, and --fast really is fast
    met_in_one_run(run, lambda r: r[0] <= 1.05 * duration and r[1] < duration / 5,
                   f"(real-time s, fast s) of a {duration:.2f} s file")


@pytest.mark.slow
def test_real_clock_minute_of_speech_keeps_pace(clip, tmp_path):
    """A minute of real speech through the whole agent pipeline (VAD, chunking) at real-time
    pace on the system clock: it takes a minute within 5 %, and every chunk is cut when its
    audio was due: when it comes out, the wall clock has passed the capture time of its last
    sample (never early), by little (not held back; about 20 ms measured here).

    The early side is checked in every run; the late side needs the CPU when a chunk is due,
    so it is met in one of up to three runs (a busy machine can hold any run up)."""
    audio, rate = sf.read(str(clip("ljspeech_LJ001-0001_to_0032_continuous")), dtype="int16")
    path = tmp_path / "minute.wav"
    sf.write(str(path), audio[: 60 * rate], rate)

    def run() -> tuple[float, float]:
        started = time.monotonic()
        lateness = []  # wall clock when a chunk came out, less its last sample's capture time
        for chunk in CaptureProcessor().run(FileSource(path, realtime=True,
                                                       clock=SystemClock())):
            lateness.append(time.time() - chunk.capture_end)
        elapsed = time.monotonic() - started
        assert elapsed > 60.0 - 1e-3, elapsed  # the last block not released early
        assert len(lateness) > 60  # 500 ms chunks of speech (pauses are not sent)
        # (a little leeway for the wall clock being slewed against the monotonic one)
        assert min(lateness) > -0.05, min(lateness)
        return round(elapsed, 3), round(max(lateness), 3)

    met_in_one_run(run, lambda r: r[0] <= 1.05 * 60.0 and r[1] < 1.0,
                   "(seconds for a minute of speech, latest chunk s)")


# --- microphone ---------------------------------------------------------------------


class FakeInputStream:
    """Plays real samples as int16 buffers, like a sound card; can report overflows."""

    def __init__(
        self,
        frames: np.ndarray,
        rate: int,
        buffer_frames: int = 1024,
        overflow_at: set[int] | None = None,
        stall_at: set[int] | None = None,
    ):
        self.pcm = np.clip(np.rint(frames * 32768), -32768, 32767).astype("<i2")
        self.rate = rate
        self.channels = 1 if frames.ndim == 1 else frames.shape[1]
        self.buffer_frames = buffer_frames
        self.overflow_at = overflow_at or set()
        self.stall_at = set(stall_at or ())
        self.index = 0
        self.closed = False
        self.t = 1_750_000_000.0

    def read(self, timeout: float) -> StreamBuffer | None:
        if self.index in self.stall_at:
            self.stall_at.discard(self.index)
            raise TimeoutError
        start = self.index * self.buffer_frames
        if start >= len(self.pcm):
            return None
        part = self.pcm[start : start + self.buffer_frames]
        self.t += len(part) / self.rate
        buffer = StreamBuffer(part.tobytes(), self.t, self.index in self.overflow_at)
        self.index += 1
        return buffer

    def close(self) -> None:
        self.closed = True


def test_microphone_48k_stereo_with_overflows(clip, snr_db):
    mono = load_audio(clip(DEV_CLIP))
    at48 = soxr.resample(mono, RATE, 48000).astype(np.float32)
    stereo = np.stack([at48, at48], axis=1)
    stream = FakeInputStream(stereo, 48000, overflow_at={5, 50, 51}, stall_at={7})
    mic = MicrophoneSource(device="fake", stream_factory=lambda: stream)
    processor = CaptureProcessor()
    chunks = list(processor.run(mic))
    assert stream.closed
    assert mic.overflows == 3 and processor.stats.overflows == 3  # counted, not fatal
    assert mic.read_timeouts == 1
    got = np.concatenate(
        [b.samples for b in MicrophoneSource(stream_factory=lambda: FakeInputStream(stereo, 48000))]
    )
    assert abs(len(got) - len(mono)) <= 2
    assert snr_db(mono, got) > 25  # the original, up to the resampler's band edge
    assert snr_db(soxr.resample(at48, 48000, RATE), got) > 60  # streaming == one-shot
    assert chunks and chunks[0].utt_start and chunks[-1].utt_end
    # capture times follow the buffers' arrival times
    for c in chunks:  # the fake card started at t = 1.75e9; the resampler adds no skew
        assert c.capture_start == pytest.approx(1_750_000_000.0 + c.offset / RATE, abs=1e-4)


def test_resolve_device_by_index_name_fragment_and_default():
    devices = [
        DeviceInfo(0, "HDA Intel PCH: ALC257 Analog", 2, 44100, False),
        DeviceInfo(3, "USB Conference Mic", 1, 48000, True),
        DeviceInfo(4, "USB Headset", 1, 16000, False),
    ]
    assert resolve_device(devices, None).index == 3
    assert resolve_device(devices, 4).index == 4
    assert resolve_device(devices, "0").index == 0
    assert resolve_device(devices, "conference").index == 3
    assert resolve_device(devices, "usb headset").index == 4
    with pytest.raises(MicrophoneError, match="ambiguous"):
        resolve_device(devices, "usb")
    with pytest.raises(MicrophoneError, match="no input device"):
        resolve_device(devices, "webcam")
    with pytest.raises(MicrophoneError, match="index 9"):
        resolve_device(devices, 9)
    with pytest.raises(MicrophoneError):
        resolve_device([], None)


def test_without_pyaudio_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyaudio", None)
    with pytest.raises(MicrophoneError, match="pip install pyaudio"):
        list_devices()


# --- stdin --------------------------------------------------------------------------


def test_stdin_pcm_gives_the_same_chunks_as_the_file(clip):
    raw, _ = sf.read(clip(DEV_CLIP), dtype="int16")
    data = raw.astype("<i2").tobytes() + b"\x01"  # plus a stray half sample
    source = StdinSource(io.BytesIO(data), rate=RATE)
    from_stdin = list(CaptureProcessor().run(source))
    from_file = list(CaptureProcessor().run(FileSource(clip(DEV_CLIP), realtime=False)))
    assert source.trailing_bytes == 1
    assert [(c.offset, c.samples, c.pcm) for c in from_stdin] == [
        (c.offset, c.samples, c.pcm) for c in from_file
    ]


def test_stdin_8k_stereo_is_resampled(clip, snr_db):
    mono = load_audio(clip(DEV_CLIP))
    at8k = soxr.resample(mono, RATE, 8000)
    stereo = np.repeat(np.clip(np.rint(at8k * 32768), -32768, 32767).astype("<i2")[:, None], 2, 1)
    got = np.concatenate(
        [b.samples for b in StdinSource(io.BytesIO(stereo.tobytes()), rate=8000, channels=2)]
    )
    assert abs(len(got) - len(mono)) <= 2
    # 8 kHz keeps only the band below 4 kHz: compare against the band-limited original
    limited = soxr.resample(at8k, 8000, RATE)
    assert snr_db(limited, got) > 30


def test_file_source_paces_a_minute_of_real_audio_on_an_injected_clock(clip):
    """The 60 s noisy recording through FileSource at real-time pace on a fake clock that
    charges 3 ms of processing per block: released on schedule, finishing at 60 s."""
    clock = ManualClock(work_per_call=0.003)
    source = FileSource(clip("extra_test"), realtime=True, clock=clock)
    lags = []
    offset = 0
    for block in source:
        offset += len(block.samples)
        lags.append(clock.monotonic() - offset / RATE)
    assert offset == 60 * RATE
    assert clock.monotonic() == pytest.approx(60.0, rel=0.05)
    assert 0 <= min(lags) and max(lags) < 0.02  # never early, never drifting late


def test_portaudio_callback_counts_device_and_queue_overflows():
    """The callback of the real pyaudio stream, driven without a sound card."""
    import queue
    import types

    from capture_agent.clock import ManualClock
    from capture_agent.sources import PyAudioInputStream

    stream = object.__new__(PyAudioInputStream)
    stream._pyaudio = types.SimpleNamespace(paInputOverflow=2, paContinue=0)
    stream._queue = queue.Queue(maxsize=2)
    stream._lost = False
    stream._clock = ManualClock()
    pcm = b"\x01\x00" * 4
    assert stream._callback(pcm, 4, {}, 0) == (None, 0)
    stream._callback(pcm, 4, {}, 2)  # the device reports an overflow
    stream._callback(pcm, 4, {}, 0)  # queue full: this buffer is lost
    first, second = stream.read(0.1), stream.read(0.1)
    assert (first.overflowed, second.overflowed) == (False, True)
    stream._callback(pcm, 4, {}, 0)  # the loss is reported on the next buffer
    assert stream.read(0.1).overflowed
    with pytest.raises(TimeoutError):
        stream.read(0.01)


def test_pushed_source_keeps_every_sample_once_in_order() -> None:
    src = PushedSource()
    pcm = (np.arange(4000) % 2000 - 1000).astype("<i2")
    assert src.push(0, pcm[:1000].tobytes(), 100.0) == 1000
    assert src.push(500, pcm[500:1500].tobytes(), 100.2) == 1500  # overlap: half dropped
    assert src.push(0, pcm[:800].tobytes(), 100.3) == 1500  # all seen already
    assert src.push(2000, pcm[2000:2500].tobytes(), 100.1) == 2500  # a hole of 500
    src.finish("left")
    blocks = list(src)
    joined = np.concatenate([b.samples for b in blocks])
    expected = np.concatenate([pcm[:1500], np.zeros(500, "<i2"), pcm[2000:2500]])
    assert np.array_equal(np.round(joined * 32768).astype("<i2"), expected)
    assert (src.duplicate_samples, src.gap_samples, src.end_reason) == (1300, 500, "left")
    # capture times on the sample timeline, anchored on the earliest possible start
    base = min(100.0 - 1000 / 16000, 100.2 - 1500 / 16000, 100.3 - 800 / 16000,
               100.1 - 2500 / 16000)
    assert blocks[-1].capture_time == pytest.approx(base + 2000 / 16000)
    with pytest.raises(ValueError, match="hole"):
        PushedSource(max_gap_samples=100).push(1000, pcm[:10].tobytes(), 1.0)
