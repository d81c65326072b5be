"""Audio sources: a file, a microphone (pyaudio) or raw PCM on standard input.

Every source yields `AudioBlock`s of 16 kHz mono float32 samples together with the
wall-clock time (epoch seconds) of the block's first sample, and counts input overflows.
"""

from __future__ import annotations

import queue
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Protocol

import numpy as np

from capture_agent import portaudio
from capture_agent.audio_io import (
    TARGET_RATE,
    AudioInfo,
    Resampler,
    decode_blocks,
    probe_audio,
    to_mono,
)
from capture_agent.clock import Clock, Pacer, SystemClock

DEFAULT_BLOCK_SAMPLES = 512  # 32 ms at 16 kHz, one VAD frame


@dataclass(frozen=True)
class AudioBlock:
    samples: np.ndarray  # float32 mono TARGET_RATE
    capture_time: float  # epoch seconds of samples[0]
    overflows: int = 0  # input overflows noticed just before this block


class AudioSource(Protocol):
    rate: int  # always TARGET_RATE for what is yielded
    total_samples: int | None  # for a progress bar; None for live input
    overflows: int
    label: str

    def __iter__(self) -> Iterator[AudioBlock]: ...

    def close(self) -> None: ...


class MicrophoneError(Exception):
    """No usable microphone (pyaudio missing, unknown device, stream failure)."""


def _rebuffer(blocks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Cut a stream of variable blocks into `size`-sample blocks (the last may be shorter)."""
    pending: list[np.ndarray] = []
    count = 0
    for block in blocks:
        pending.append(block)
        count += len(block)
        if count < size:
            continue
        joined = np.concatenate(pending)
        cut = len(joined) - len(joined) % size
        for start in range(0, cut, size):
            yield joined[start : start + size]
        rest = joined[cut:]
        pending = [rest] if len(rest) else []
        count = len(rest)
    if count:
        yield np.concatenate(pending)


class FileSource:
    """An audio file played as if spoken live (realtime=True) or as fast as possible.

    In real-time mode a block is released when its last sample "has been spoken", on a
    schedule computed from the start time (no drift). Capture times are on the timeline
    that starts at the start time: sample n was "captured" at start + n / 16000. In fast
    mode the same (virtual) timeline is used, so it runs ahead of the wall clock.
    """

    def __init__(
        self,
        path: str | Path,
        realtime: bool = True,
        clock: Clock | None = None,
        block_samples: int = DEFAULT_BLOCK_SAMPLES,
    ) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.clock = clock or SystemClock()
        self.block_samples = block_samples
        self.info: AudioInfo = probe_audio(self.path)  # raises AudioInputError early
        self.rate = TARGET_RATE
        self.total_samples = self.info.output_samples
        self.overflows = 0
        self.label = f"file {self.path.name}"
        self.pacer = Pacer(self.clock, TARGET_RATE)

    def __iter__(self) -> Iterator[AudioBlock]:
        self.pacer.start()
        offset = 0
        for block in _rebuffer(decode_blocks(self.path, info=self.info), self.block_samples):
            n = len(block)
            if self.realtime:
                self.pacer.wait_until(offset + n)
            yield AudioBlock(block, self.pacer.wall_at(offset))
            offset += n

    def close(self) -> None:
        pass


class StdinSource:
    """Raw signed 16-bit little-endian PCM from a byte stream (standard input by default)."""

    def __init__(
        self,
        stream: BinaryIO | None = None,
        rate: int = TARGET_RATE,
        channels: int = 1,
        clock: Clock | None = None,
        block_samples: int = DEFAULT_BLOCK_SAMPLES,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"invalid input rate {rate} Hz")
        if channels <= 0:
            raise ValueError(f"invalid channel count {channels}")
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.in_rate = rate
        self.channels = channels
        self.clock = clock or SystemClock()
        self.rate = TARGET_RATE
        self.total_samples: int | None = None
        self.overflows = 0
        self.trailing_bytes = 0  # an incomplete last frame, ignored
        self.label = f"stdin s16le {rate} Hz x{channels}"
        self._frames_per_read = max(1, round(block_samples * rate / TARGET_RATE))

    def __iter__(self) -> Iterator[AudioBlock]:
        resampler = Resampler(self.in_rate)
        frame_bytes = 2 * self.channels
        pending = b""
        frames_in = 0
        produced = 0
        arrival = self.clock.wall()
        while True:
            data = self.stream.read(self._frames_per_read * frame_bytes)
            if not data:
                break
            data = pending + data
            usable = len(data) - len(data) % frame_bytes
            pending = data[usable:]
            if not usable:
                continue
            frames = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, self.channels)
            frames_in += len(frames)
            arrival = self.clock.wall()  # taken as the time of the last frame read
            out = resampler.process(to_mono(frames.astype(np.float32) / 32768.0))
            if len(out):
                start = arrival - frames_in / self.in_rate + produced / TARGET_RATE
                yield AudioBlock(out, start)
                produced += len(out)
        self.trailing_bytes = len(pending)
        tail = resampler.process(np.zeros(0, dtype=np.float32), last=True)
        if len(tail):
            yield AudioBlock(tail, arrival - frames_in / self.in_rate + produced / TARGET_RATE)

    def close(self) -> None:
        pass


# --- microphone -------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamBuffer:
    """One buffer from an input stream: interleaved int16 frames."""

    pcm: bytes
    arrival: float  # epoch seconds when the buffer was complete (its last sample)
    overflowed: bool = False  # the device (or our queue) lost audio before this buffer


class InputStream(Protocol):
    """The small part of a sound-card stream the microphone source needs (fakeable)."""

    rate: int
    channels: int

    def read(self, timeout: float) -> StreamBuffer | None:
        """The next buffer; None when the stream has ended. Raises TimeoutError."""
        ...

    def close(self) -> None: ...


DeviceInfo = portaudio.Device


def _pyaudio() -> ModuleType:
    return portaudio.import_pyaudio(
        MicrophoneError, "microphone input needs pyaudio: pip install pyaudio (with portaudio19-dev)")


def list_devices() -> list[DeviceInfo]:
    """Input devices PortAudio can see (raises MicrophoneError without pyaudio)."""
    return portaudio.list_devices(_pyaudio(), "input")


def resolve_device(devices: list[DeviceInfo], device: str | int | None) -> DeviceInfo:
    """Pick a device by index, by (case-insensitive) name or name fragment, or the default."""
    return portaudio.choose_device(devices, device, "input", MicrophoneError,
                                   none_found="no input devices found")


class PyAudioInputStream:
    """A PortAudio input stream in callback mode: buffers go through a bounded queue.

    Device overflows (paInputOverflow) and buffers dropped because the consumer fell
    behind both mark the next buffer as `overflowed`; neither stops the stream.
    """

    def __init__(
        self,
        device: DeviceInfo,
        rate: int | None = None,
        channels: int = 1,
        frames_per_buffer: int = 1024,
        max_queued: int = 64,
        clock: Clock | None = None,
    ) -> None:
        pyaudio = _pyaudio()
        self._pyaudio = pyaudio
        self.rate = rate or device.default_rate
        self.channels = min(channels, device.channels)
        self._clock = clock or SystemClock()
        self._queue: queue.Queue[StreamBuffer | None] = queue.Queue(maxsize=max_queued)
        self._lost = False
        self._pa = portaudio.open_portaudio(pyaudio)
        try:
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=self.channels,
                rate=self.rate,
                input=True,
                input_device_index=device.index,
                frames_per_buffer=frames_per_buffer,
                stream_callback=self._callback,
            )
        except Exception as exc:
            self._pa.terminate()
            raise MicrophoneError(f"cannot open input device {device.name!r}: {exc}") from exc

    def _callback(
        self, in_data: bytes | None, frame_count: int, time_info: dict, status: int
    ) -> tuple[None, int]:
        overflowed = bool(status & self._pyaudio.paInputOverflow) or self._lost
        buffer = StreamBuffer(bytes(in_data or b""), self._clock.wall(), overflowed)
        try:
            self._queue.put_nowait(buffer)
            self._lost = False
        except queue.Full:
            self._lost = True  # reported on the next buffer that fits
        return (None, self._pyaudio.paContinue)

    def read(self, timeout: float) -> StreamBuffer | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None

    def close(self) -> None:
        try:
            self._stream.stop_stream()
            self._stream.close()
        finally:
            self._pa.terminate()


class MicrophoneSource:
    """Live input from a microphone, downmixed and resampled to 16 kHz mono.

    `device` is an index, a name (fragment) or None for the default input device.
    `stream_factory` builds the InputStream (tests pass a fake; the default opens
    PortAudio through pyaudio, imported only here).
    """

    def __init__(
        self,
        device: str | int | None = None,
        rate: int | None = None,
        channels: int = 1,
        stream_factory: Callable[[], InputStream] | None = None,
        read_timeout: float = 2.0,
    ) -> None:
        self.device = device
        self.rate = TARGET_RATE
        self.total_samples: int | None = None
        self.overflows = 0
        self.read_timeouts = 0
        self.read_timeout = read_timeout
        if stream_factory is None:
            info = resolve_device(list_devices(), device)
            self.label = f"mic {info.index}: {info.name}"

            def stream_factory() -> InputStream:
                return PyAudioInputStream(info, rate=rate, channels=channels)

        else:
            self.label = f"mic {device}"
        self._factory = stream_factory
        self._stream: InputStream | None = None
        self._closed = False

    def __iter__(self) -> Iterator[AudioBlock]:
        stream = self._stream = self._factory()
        resampler = Resampler(stream.rate)
        lost = 0  # overflows not yet reported with a block
        frames_in = 0  # input frames received
        produced = 0  # output samples yielded
        last_arrival = 0.0
        try:
            while not self._closed:
                try:
                    buffer = stream.read(self.read_timeout)
                except TimeoutError:
                    self.read_timeouts += 1
                    continue
                if buffer is None:
                    tail = resampler.process(np.zeros(0, dtype=np.float32), last=True)
                    if len(tail):
                        start = last_arrival - frames_in / stream.rate + produced / TARGET_RATE
                        yield AudioBlock(tail, start, lost)
                    break
                last_arrival = buffer.arrival
                if buffer.overflowed:
                    self.overflows += 1
                    lost += 1
                frames = np.frombuffer(buffer.pcm, dtype="<i2")
                frames = frames[: len(frames) - len(frames) % stream.channels]
                mono = to_mono(frames.reshape(-1, stream.channels).astype(np.float32) / 32768.0)
                frames_in += len(mono)
                out = resampler.process(mono)
                if len(out):
                    # output sample k lines up with input frame k * in_rate / 16000 (soxr
                    # compensates its delay); the arrival time belongs to input frame
                    # `frames_in`, so each block is timed afresh (no drift over hours)
                    start = buffer.arrival - frames_in / stream.rate + produced / TARGET_RATE
                    yield AudioBlock(out, start, lost)
                    produced += len(out)
                    lost = 0
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.close()


# --- pushed PCM (the browser speaker page's websocket) ------------------------------------


class PushedSource:
    """16 kHz mono int16 frames pushed by someone else (`s2st web`'s speaker websocket).

    Each frame carries its **session sample offset** (where its first sample lies in the
    speaker's stream since the start), so a frame sent again after a reconnect is dropped
    (or trimmed where it overlaps) and a hole is filled with silence: every sample reaches
    the pipeline once, in order, whatever the link did. `push()` is called from the event
    loop, the iteration runs in the capture thread; `finish()` ends the stream (the
    pipeline flushes the last utterance). Capture times are on the sender's sample
    timeline: sample ``o`` was captured at ``base + o / 16000``, ``base`` being the earliest
    any frame could have started (the minimum over frames of arrival minus the frame's end
    on that timeline), so a frame resent late keeps its own time.
    """

    def __init__(self, label: str = "pushed pcm", max_gap_samples: int = 60 * TARGET_RATE
                 ) -> None:
        self.rate = TARGET_RATE
        self.total_samples: int | None = None
        self.overflows = 0
        self.label = label
        self.next_offset = 0  # the session offset of the next sample the pipeline needs
        self.duplicate_samples = 0  # received again (after a reconnect) and dropped
        self.gap_samples = 0  # never received, filled with silence
        self.max_gap_samples = max_gap_samples
        self._base: float | None = None
        # unbounded: frames come at the speaker's pace, the capture thread keeps up easily
        self._queue: queue.Queue[AudioBlock | None] = queue.Queue()
        self._finished = False
        self.end_reason = "eof"  # the session's end reason once finished (CaptureAgent)

    def push(self, offset: int, pcm: bytes, arrival: float) -> int:
        """Add a frame that starts at session sample ``offset``; returns the next offset wanted."""
        if self._finished:
            return self.next_offset
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        end = offset + len(samples)
        base = arrival - end / TARGET_RATE
        self._base = base if self._base is None else min(self._base, base)
        if end <= self.next_offset:
            self.duplicate_samples += len(samples)
            return self.next_offset
        if offset < self.next_offset:
            self.duplicate_samples += self.next_offset - offset
            samples = samples[self.next_offset - offset :]
            offset = self.next_offset
        gap = offset - self.next_offset
        if gap:
            if gap > self.max_gap_samples:
                raise ValueError(f"a hole of {gap / TARGET_RATE:.1f} s in the pushed audio")
            self.gap_samples += gap
            self._put(np.zeros(gap, dtype=np.float32), self.next_offset)
        self._put(samples.astype(np.float32) / 32768.0, offset)
        self.next_offset = end
        return end

    @property
    def finished(self) -> bool:
        return self._finished

    def _put(self, samples: np.ndarray, offset: int) -> None:
        assert self._base is not None
        self._queue.put(AudioBlock(samples, self._base + offset / TARGET_RATE))

    def finish(self, reason: str = "eof") -> None:
        """No more frames: the iteration ends once what was pushed is processed."""
        if not self._finished:
            self._finished = True
            self.end_reason = reason
            self._queue.put(None)

    def __iter__(self) -> Iterator[AudioBlock]:
        while True:
            block = self._queue.get()
            if block is None:
                return
            yield block

    def close(self) -> None:
        self.finish()
