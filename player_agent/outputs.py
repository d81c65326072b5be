"""Where the played speech goes: a sound device (pyaudio) or a WAV file.

A sink plays one piece at a time.  ``await sink.play(pcm, rate, capture_start)`` returns
the wall-clock time the piece started (or will start) sounding, once the sink is ready
for the next piece, so the caller chooses the next piece as late as possible.

- :class:`PyAudioSink` writes to an output device chosen by index or name (fragment);
  pyaudio is imported only when the sink opens.
- :class:`WavSink` writes the mix to a 16-bit mono WAV aligned with the source's timeline:
  each piece is placed at its source ``capture_start`` offset from ``origin`` (the session
  start), or right after the previous piece where that would overlap; silence fills the
  rest.  With ``paced`` it also keeps real-time playback timing, so latency figures mean
  what they would mean on a speaker; without, it writes as fast as pieces come (replays).
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bus import clock
from capture_agent import portaudio

OUTPUT_RATE = 24_000


class OutputError(RuntimeError):
    """The output could not be opened or written (no pyaudio, no such device, bad path)."""


class Sink(Protocol):
    rate: int

    async def play(self, pcm: bytes, rate: int, capture_start: float) -> float: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


def resample_pcm(pcm: bytes, rate_in: int, rate_out: int) -> bytes:
    """int16 LE mono PCM from ``rate_in`` to ``rate_out`` (soxr if installed, else linear)."""
    if rate_in == rate_out or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    try:
        import soxr

        out = soxr.resample(samples, rate_in, rate_out)
    except ImportError:
        n_out = round(len(samples) * rate_out / rate_in)
        out = np.interp(np.linspace(0, len(samples) - 1, n_out), np.arange(len(samples)), samples)
    return (np.clip(out, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class Playhead:
    """Real-time schedule of one output: pieces back to back, never overlapping."""

    def __init__(self) -> None:
        self.busy_until = 0.0

    def schedule(self, duration: float, now: float) -> float:
        start = max(now, self.busy_until)
        self.busy_until = start + duration
        return start


# -- WAV -------------------------------------------------------------------------


class WavSink:
    def __init__(self, path: str | Path, *, rate: int = OUTPUT_RATE, paced: bool = True) -> None:
        self.path = Path(path)
        self.rate = rate
        self.paced = paced
        self.origin: float | None = None
        self.written = 0  # samples in the file so far
        self.playhead = Playhead()
        try:
            self._wav = wave.open(str(self.path), "wb")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc}") from None
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)

    def set_origin(self, origin: float) -> None:
        """The wall-clock time that sample 0 of the file stands for (the session start)."""
        if self.origin is None:
            self.origin = origin

    async def play(self, pcm: bytes, rate: int, capture_start: float) -> float:
        data = resample_pcm(pcm, rate, self.rate)
        if self.origin is None:
            self.origin = capture_start
        at = max(round((capture_start - self.origin) * self.rate), self.written)
        if at > self.written:
            self._wav.writeframes(bytes(2 * (at - self.written)))
        self._wav.writeframes(data)
        self.written = at + len(data) // 2
        duration = len(data) / 2 / self.rate
        now = clock.now()
        if not self.paced:
            return now
        start = self.playhead.schedule(duration, now)
        await asyncio.sleep(max(self.playhead.busy_until - clock.now(), 0.0))
        return start

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self._wav.close()


# -- sound device ------------------------------------------------------------------


OutputDevice = portaudio.Device


def _pyaudio() -> Any:
    return portaudio.import_pyaudio(
        OutputError, "playing to a device needs pyaudio: pip install 's2st[mic]' "
        "(with portaudio19-dev); or write a file with --out")


def list_output_devices() -> list[OutputDevice]:
    return portaudio.list_devices(_pyaudio(), "output")


def choose_device(devices: list[OutputDevice], wanted: str | None) -> OutputDevice:
    """By index, exact name, unique name fragment (case-insensitive), or the default."""
    return portaudio.choose_device(
        devices, wanted, "output", OutputError,
        none_found="no audio output devices found (use --out file.wav)",
        hint=" (see --list-devices)")


class PyAudioSink:
    def __init__(self, device: str | None = None, *, rate: int = OUTPUT_RATE) -> None:
        pyaudio = _pyaudio()
        self.device = choose_device(list_output_devices(), device)
        self.rate = rate
        self.playhead = Playhead()
        self._pa = portaudio.open_portaudio(pyaudio)
        try:
            self._stream = self._pa.open(format=pyaudio.paInt16, channels=1, rate=rate,
                                         output=True, output_device_index=self.device.index)
        except OSError as exc:
            self._pa.terminate()
            raise OutputError(f"cannot open output device {self.device.name!r}: {exc}") from None
        self._latency = float(self._stream.get_output_latency() or 0.0)

    async def play(self, pcm: bytes, rate: int, capture_start: float) -> float:
        data = resample_pcm(pcm, rate, self.rate)
        start = self.playhead.schedule(len(data) / 2 / self.rate, clock.now()) + self._latency
        # a blocking write returns once the last frames are in the device buffer
        await asyncio.get_running_loop().run_in_executor(None, self._stream.write, data)
        return start

    async def drain(self) -> None:
        await asyncio.sleep(max(self.playhead.busy_until + self._latency - clock.now(), 0.0))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.stop_stream()
            self._stream.close()
        self._pa.terminate()
