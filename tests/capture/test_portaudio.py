"""PortAudio devices, both ways: one listing and one choice for inputs and outputs."""

from __future__ import annotations

import types
from typing import Any, ClassVar

import pytest

from capture_agent import portaudio
from capture_agent.portaudio import Device


class FakePyAudio:
    infos: ClassVar[list[dict[str, Any]]] = [
        {"name": "Mic", "maxInputChannels": 1, "maxOutputChannels": 0, "defaultSampleRate": 16000.0},
        {"name": "Speakers", "maxInputChannels": 0, "maxOutputChannels": 2,
         "defaultSampleRate": 48000.0},
        {"name": "USB Headset", "maxInputChannels": 1, "maxOutputChannels": 2,
         "defaultSampleRate": 48000.0}]
    terminated = 0

    def get_default_input_device_info(self) -> dict[str, Any]:
        return {"index": 0}

    def get_default_output_device_info(self) -> dict[str, Any]:
        raise OSError("no default output")

    def get_device_count(self) -> int:
        return len(self.infos)

    def get_device_info_by_index(self, i: int) -> dict[str, Any]:
        return self.infos[i]

    def terminate(self) -> None:
        FakePyAudio.terminated += 1


def test_devices_are_listed_by_direction_with_the_default_marked() -> None:
    module = types.SimpleNamespace(PyAudio=FakePyAudio)
    assert portaudio.list_devices(module, "input") == [
        Device(0, "Mic", 1, 16000, True), Device(2, "USB Headset", 1, 48000, False)]
    assert portaudio.list_devices(module, "output") == [
        Device(1, "Speakers", 2, 48000, False), Device(2, "USB Headset", 2, 48000, False)]
    assert FakePyAudio.terminated == 2


def test_the_same_name_twice_is_ambiguous_and_says_the_indexes() -> None:
    twins = [Device(1, "USB Headset", 1, 48000, False), Device(4, "USB Headset", 1, 48000, False)]
    with pytest.raises(ValueError, match=r"input device 'usb headset' is ambiguous \(1: .*, 4: "):
        portaudio.choose_device(twins, "usb headset", "input", ValueError, none_found="none")
    assert portaudio.choose_device(twins, 4, "input", ValueError, none_found="none").index == 4
