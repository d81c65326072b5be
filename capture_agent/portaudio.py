"""PortAudio's sound devices, both ways: the capture agent's inputs and the player's outputs.

pyaudio is imported only when devices are listed or one is opened; what PortAudio's ALSA/JACK
probing prints to the terminal meanwhile is muted. Each caller names its own error class and
messages (:class:`capture_agent.sources.MicrophoneError`, :class:`player_agent.outputs.OutputError`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["input", "output"]


@dataclass(frozen=True)
class Device:
    """A sound device in one direction (``channels``: the most it takes that way)."""

    index: int
    name: str
    channels: int
    default_rate: int
    is_default: bool


def import_pyaudio(error: type[Exception], message: str) -> Any:
    """The pyaudio module; ``error(message)`` without it."""
    try:
        import pyaudio
    except ImportError:
        raise error(message) from None
    return pyaudio


@contextlib.contextmanager
def native_stderr_muted() -> Iterator[None]:
    """Silence what ALSA/JACK print to fd 2 while PortAudio scans the devices."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_portaudio(pyaudio: Any) -> Any:  # a pyaudio.PyAudio
    with native_stderr_muted():
        return pyaudio.PyAudio()


def list_devices(pyaudio: Any, direction: Direction) -> list[Device]:
    """The devices PortAudio can see that take audio in ``direction``."""
    pa = open_portaudio(pyaudio)
    channels_key = "maxInputChannels" if direction == "input" else "maxOutputChannels"
    try:
        try:
            default = int(getattr(pa, f"get_default_{direction}_device_info")()["index"])
        except OSError:
            default = -1
        devices = []
        for index in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(index)
            channels = int(info.get(channels_key, 0))
            if channels > 0:
                devices.append(Device(index, str(info["name"]), channels,
                                      int(info["defaultSampleRate"]), index == default))
        return devices
    finally:
        pa.terminate()


def choose_device(devices: list[Device], wanted: str | int | None, direction: Direction,
                  error: type[Exception], *, none_found: str, hint: str = "") -> Device:
    """By index, exact name, unique name fragment (case-insensitive), or the default.

    ``none_found``: the message when there are no devices; ``hint`` ends the message for a
    name nothing matches."""
    if not devices:
        raise error(none_found)
    if wanted is None or wanted == "":
        return next((d for d in devices if d.is_default), devices[0])
    if isinstance(wanted, int) or wanted.isdigit():
        index = int(wanted)
        for d in devices:
            if d.index == index:
                return d
        raise error(f"no {direction} device with index {index}")
    low = wanted.lower()
    exact = [d for d in devices if d.name.lower() == low]
    matches = exact or [d for d in devices if low in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise error(f"no {direction} device named like {wanted!r}{hint}")
    names = ", ".join(f"{d.index}: {d.name}" for d in matches)
    raise error(f"{direction} device {wanted!r} is ambiguous ({names})")


def print_devices(devices: list[Device], none_found: str) -> int:
    """``s2st capture/play --list-devices``: one line per device (``*`` marks the default);
    exit status 0, or 1 with ``none_found`` when there are none."""
    if not devices:
        print(none_found)
        return 1
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark}{d.index:3d}  {d.name}  ({d.channels} ch, {d.default_rate} Hz)")
    return 0
