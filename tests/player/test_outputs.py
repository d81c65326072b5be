"""The outputs: device choice, resampling, and the pyaudio sink against a fake PortAudio."""

from __future__ import annotations

import sys
import time
import types
from typing import Any

import numpy as np
import pytest

from player_agent.outputs import OutputDevice, OutputError, PyAudioSink, choose_device, resample_pcm

DEVICES = [OutputDevice(0, "HDA Intel PCH: ALC3246 Analog", 2, 48000, True),
           OutputDevice(3, "USB Audio Device", 2, 44100, False),
           OutputDevice(5, "USB Headset", 1, 48000, False)]


def test_device_by_index_name_fragment_or_default() -> None:
    assert choose_device(DEVICES, None).index == 0
    assert choose_device(DEVICES, "3").name == "USB Audio Device"
    assert choose_device(DEVICES, "headset").index == 5
    assert choose_device(DEVICES, "usb audio device").index == 3
    with pytest.raises(OutputError, match="ambiguous"):
        choose_device(DEVICES, "usb")
    with pytest.raises(OutputError, match="no output device named"):
        choose_device(DEVICES, "hdmi")
    with pytest.raises(OutputError, match="index 9"):
        choose_device(DEVICES, "9")
    with pytest.raises(OutputError, match="no audio output devices"):
        choose_device([], None)


def test_resampling_keeps_duration_and_pitch() -> None:
    rate_in, rate_out = 22050, 24000
    t = np.arange(rate_in) / rate_in
    tone = (np.sin(2 * np.pi * 440 * t) * 16000).astype("<i2")
    out = np.frombuffer(resample_pcm(tone.tobytes(), rate_in, rate_out), dtype="<i2")
    assert abs(len(out) - rate_out) <= 2
    spectrum = np.abs(np.fft.rfft(out.astype(np.float32)))
    assert np.argmax(spectrum) * rate_out / len(out) == pytest.approx(440, abs=2)
    assert resample_pcm(tone.tobytes(), 24000, 24000) == tone.tobytes()


class FakeStream:
    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        time.sleep(len(data) / 2 / self.rate / 10)  # a device consuming 10x real time
        self.written.append(data)

    def get_output_latency(self) -> float:
        return 0.02

    def stop_stream(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_pyaudio(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    opened: dict[str, Any] = {}

    class PyAudio:
        def get_default_output_device_info(self) -> dict[str, Any]:
            return {"index": 1}

        def get_device_count(self) -> int:
            return 3

        def get_device_info_by_index(self, i: int) -> dict[str, Any]:
            return [{"name": "Mic", "maxOutputChannels": 0, "defaultSampleRate": 16000},
                    {"name": "Speakers", "maxOutputChannels": 2, "defaultSampleRate": 48000},
                    {"name": "USB Headset", "maxOutputChannels": 1, "defaultSampleRate": 48000},
                    ][i]

        def open(self, **kw: Any) -> FakeStream:
            opened.update(kw)
            opened["stream"] = FakeStream(kw["rate"])
            return opened["stream"]

        def terminate(self) -> None:
            opened["terminated"] = True

    module = types.SimpleNamespace(PyAudio=PyAudio, paInt16=8)
    monkeypatch.setitem(sys.modules, "pyaudio", module)
    return opened


async def test_pyaudio_sink_plays_to_the_chosen_device_back_to_back(
        fake_pyaudio: dict[str, Any]) -> None:
    sink = PyAudioSink("headset", rate=24000)
    assert fake_pyaudio["output_device_index"] == 2 and fake_pyaudio["format"] == 8
    piece = np.zeros(22050 // 2, dtype="<i2").tobytes()  # 0.5 s at 22.05 kHz
    t = time.time()
    first = await sink.play(piece, 22050, t)
    second = await sink.play(piece, 22050, t)
    assert second - first == pytest.approx(0.5, abs=0.01)  # queued after the first, no overlap
    assert [len(w) for w in fake_pyaudio["stream"].written] == [24000, 24000]  # resampled
    sink.close()
    assert fake_pyaudio["stream"].closed and fake_pyaudio["terminated"]


def test_no_pyaudio_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyaudio", None)
    with pytest.raises(OutputError, match="pip install"):
        PyAudioSink(None)
