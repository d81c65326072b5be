"""espeak-ng (the Debian program): every language it knows, robotic but tiny and fast.

Text goes in on stdin (UTF-8, never parsed as options or markup) and a WAV comes back on
stdout. It is also the last link of every fallback chain, so it must not need anything but
the `espeak-ng` executable.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
from functools import cached_property

import numpy as np

from .base import Audio, BackendUnavailable, SynthesisError, base_lang

log = logging.getLogger(__name__)

# Where espeak-ng has several accents, the one spoken for a bare language code.
PREFERRED_ACCENT = {"en": "en-us", "fr": "fr-fr", "pt": "pt-br", "vi": "vi", "zh": "cmn"}
# Voice variants (formant sets) used to tell speakers apart: those that Whisper base still
# understood best on Spanish FLEURS sentences (WER 0.31-0.38 at 150 wpm; f2, f3, f4 and m4
# were clearly worse, f4 0.55), the default voice first.
VARIANTS = ("", "m3", "f5", "m2", "m7", "f1")


class EspeakSynthesizer:
    """The `espeak-ng` executable, one process per call."""

    name = "espeak"

    def __init__(
        self, executable: str = "espeak-ng", words_per_minute: int = 150, timeout_s: float = 20.0
    ) -> None:
        self.executable = executable
        self.words_per_minute = words_per_minute
        self.timeout_s = timeout_s

    @cached_property
    def _program(self) -> str:
        path = shutil.which(self.executable)
        if path is None:
            raise BackendUnavailable(
                f"{self.executable!r} not found on PATH; install it with: apt-get install espeak-ng"
            )
        return path

    @cached_property
    def _languages(self) -> frozenset[str]:
        """The language tags of the installed voices (`espeak-ng --voices`)."""
        result = subprocess.run(
            [self._program, "--voices"], capture_output=True, text=True, timeout=self.timeout_s
        )
        tags = {line.split()[1] for line in result.stdout.splitlines()[1:] if len(line.split()) > 1}
        return frozenset(tags)

    def _voice_for(self, lang: str) -> str | None:
        tag = lang.strip().replace("_", "-").lower()
        if tag in self._languages:
            return tag
        primary = base_lang(tag)
        preferred = PREFERRED_ACCENT.get(primary)
        if preferred in self._languages:
            return preferred
        if primary in self._languages:
            return primary
        accents = sorted(t for t in self._languages if t.startswith(primary + "-"))
        return accents[0] if accents else None

    def supports(self, lang: str) -> bool:
        try:
            return self._voice_for(lang) is not None
        except (BackendUnavailable, OSError, subprocess.SubprocessError):
            return False

    def voices(self, lang: str) -> list[str]:
        base = self._voice_for(lang)
        if base is None:
            return []
        return [base if not variant else f"{base}+{variant}" for variant in VARIANTS]

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        voice = voice or self._voice_for(lang)
        if voice is None:
            raise SynthesisError(f"espeak-ng has no voice for language {lang!r}")
        command = [
            self._program,
            "-v",
            voice,
            "-s",
            str(round(self.words_per_minute * speed)),
            "-b",
            "1",
            "--stdout",
        ]
        try:
            result = subprocess.run(
                command, input=text.encode("utf-8"), capture_output=True, timeout=self.timeout_s
            )
        except subprocess.TimeoutExpired as exc:
            raise SynthesisError(f"espeak-ng took over {self.timeout_s:.0f} s") from exc
        if result.returncode != 0:
            message = result.stderr.decode("utf-8", "replace").strip()
            raise SynthesisError(f"espeak-ng failed ({result.returncode}): {message}")
        return parse_wav(result.stdout)


def parse_wav(data: bytes) -> Audio:
    """Read a 16-bit mono PCM WAV, tolerating the unknown sizes of a streamed header."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisError("espeak-ng did not return a WAV stream")
    pos, rate, channels, bits = 12, 0, 0, 0
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = pos + 8
        if chunk_id == b"fmt ":
            _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[body : body + 16])
        elif chunk_id == b"data":
            if not rate or channels != 1 or bits != 16:
                raise SynthesisError(f"unexpected WAV format: {channels} ch, {bits} bit")
            end = min(len(data), body + size) if size else len(data)
            payload = data[body:end]
            payload = payload[: len(payload) - len(payload) % 2]
            return Audio(np.frombuffer(payload, dtype="<i2").astype(np.int16), rate)
        pos = body + size + (size & 1)
    raise SynthesisError("WAV stream has no data chunk")
