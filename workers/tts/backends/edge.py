"""Microsoft Edge online voices through `edge-tts` (optional extra `s2st[edge]`).

Needs the internet: on an offline host every call raises SynthesisError and the engine's
fallback chain speaks instead. The package is imported only when a call is made. The MP3
it returns is decoded by ffmpeg.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import shutil
import subprocess
from typing import Any

import numpy as np

from .base import Audio, BackendUnavailable, SynthesisError, base_lang

SAMPLE_RATE = 24_000
VOICES = {
    "es": ["es-ES-AlvaroNeural", "es-ES-ElviraNeural", "es-MX-JorgeNeural", "es-MX-DaliaNeural"],
    "en": ["en-US-GuyNeural", "en-US-JennyNeural", "en-GB-RyanNeural", "en-GB-SoniaNeural"],
    "fr": ["fr-FR-HenriNeural", "fr-FR-DeniseNeural"],
    "de": ["de-DE-ConradNeural", "de-DE-KatjaNeural"],
    "pt": ["pt-BR-AntonioNeural", "pt-BR-FranciscaNeural"],
    "it": ["it-IT-DiegoNeural", "it-IT-ElsaNeural"],
}


class EdgeSynthesizer:
    """edge-tts, one request per call, decoded to 24 kHz mono."""

    name = "edge"

    def __init__(self, timeout_s: float = 15.0) -> None:
        self.timeout_s = timeout_s

    def _module(self) -> Any:
        try:
            return importlib.import_module("edge_tts")
        except ImportError as exc:
            raise BackendUnavailable(
                "edge-tts is not installed (it is an optional extra for hosts with internet "
                "access): pip install 's2st[edge]'"
            ) from exc

    def supports(self, lang: str) -> bool:
        return base_lang(lang) in VOICES

    def voices(self, lang: str) -> list[str]:
        return list(VOICES.get(base_lang(lang), []))

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        module = self._module()
        voice = voice or next(iter(self.voices(lang)), None)
        if voice is None:
            raise SynthesisError(f"no edge-tts voice configured for {lang!r}")
        try:
            mp3 = _run_coroutine(_fetch(module, text, voice, speed), self.timeout_s)
        except (TimeoutError, concurrent.futures.TimeoutError) as exc:
            raise SynthesisError(f"edge-tts gave no answer in {self.timeout_s:.0f} s") from exc
        except Exception as exc:  # aiohttp / edge_tts raise many types when offline
            raise SynthesisError(
                f"edge-tts failed, is this host offline? ({type(exc).__name__}: {exc})"
            ) from exc
        if not mp3:
            raise SynthesisError("edge-tts returned no audio")
        return Audio(decode_mp3(mp3, SAMPLE_RATE), SAMPLE_RATE)


async def _fetch(module: Any, text: str, voice: str, speed: float = 1.0) -> bytes:
    chunks: list[bytes] = []
    rate = f"{round((speed - 1.0) * 100):+d}%"
    async for message in module.Communicate(text, voice, rate=rate).stream():
        if message.get("type") == "audio":
            chunks.append(message["data"])
    return b"".join(chunks)


def _run_coroutine(coroutine: Any, timeout_s: float) -> bytes:
    """Run a coroutine to completion from synchronous code, even inside a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(asyncio.run, asyncio.wait_for(coroutine, timeout_s))
        return future.result(timeout=timeout_s + 5)


def decode_mp3(data: bytes, rate: int) -> np.ndarray:
    """Decode compressed audio to mono int16 at `rate` with ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise BackendUnavailable(
            "ffmpeg is needed to decode edge-tts audio: apt-get install ffmpeg"
        )
    command = [
        ffmpeg,
        "-v",
        "error",
        "-i",
        "pipe:0",
        "-f",
        "s16le",
        "-ac",
        "1",
        "-ar",
        str(rate),
        "pipe:1",
    ]
    result = subprocess.run(command, input=data, capture_output=True, timeout=30)
    if result.returncode != 0:
        raise SynthesisError(
            f"ffmpeg could not decode edge-tts audio: {result.stderr.decode()[-300:]}"
        )
    return np.frombuffer(result.stdout, dtype="<i2").astype(np.int16)
