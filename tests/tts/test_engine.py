"""The engine's fallback chain, ordering, counters and bad input, with real espeak-ng speech."""

from __future__ import annotations

import itertools
import logging
import shutil
import subprocess
import sys
import types
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from workers.tts.backends import Audio, BackendUnavailable, SynthesisError
from workers.tts.backends.edge import EdgeSynthesizer
from workers.tts.backends.espeak import EspeakSynthesizer
from workers.tts.config import TtsConfig
from workers.tts.engine import TtsEngine
from workers.tts.splitter import SplitPolicy
from workers.tts.voices import pick_voice


class Crashing:
    """A neural-voice stand-in that speaks with espeak-ng but crashes on chosen pieces."""

    name = "primary"

    def __init__(
        self,
        espeak: EspeakSynthesizer,
        crash_on: set[int] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.espeak = espeak
        self.crash_on = crash_on  # call numbers that raise; None: every call
        self.error = error or RuntimeError("onnxruntime: invalid input shape")
        self.calls = 0

    def supports(self, lang: str) -> bool:
        return self.espeak.supports(lang)

    def voices(self, lang: str) -> list[str]:
        return ["primary-a", "primary-b"]

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        call = self.calls
        self.calls += 1
        if self.crash_on is None or call in self.crash_on:
            raise self.error
        return self.espeak.synthesize(text, lang)


def engine_with(primary: Any, espeak: EspeakSynthesizer, **config: Any) -> TtsEngine:
    settings = TtsConfig(backends={"*": ("primary",)}, fallback="espeak", **config)
    return TtsEngine(settings, {"primary": primary, "espeak": espeak})


def test_crashing_backend_is_replaced_by_espeak_for_the_rest_of_the_segment(
    espeak: EspeakSynthesizer, manifest: dict[str, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    text = manifest["fleurs_en_1938"]["translation_es"]
    primary = Crashing(espeak, crash_on={1})
    engine = engine_with(primary, espeak)
    with caplog.at_level(logging.WARNING, logger="workers.tts.engine"):
        pieces = list(engine.speak(text, "es", session="s", speaker="Ana"))
    assert len(pieces) >= 3
    assert [p.part for p in pieces] == list(range(len(pieces)))
    assert [p.last for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert " ".join(p.text for p in pieces).split() == text.split()
    # The voice that took over keeps the segment: no switching back mid-sentence.
    assert [p.backend for p in pieces] == ["primary"] + ["espeak"] * (len(pieces) - 1)
    assert [p.fallback for p in pieces] == [False] + [True] * (len(pieces) - 1)
    assert pieces[0].voice in primary.voices("es")
    assert len({p.voice for p in pieces[1:]}) == 1 and pieces[1].voice in espeak.voices("es")
    assert all(p.samples > 0.3 * p.rate for p in pieces)  # real speech, not a silent stub
    assert primary.calls == 2 and engine.stats.failures == {"primary": 1}
    assert engine.stats.fallbacks == len(pieces) - 1 and engine.stats.silent == 0
    assert "primary failed" in caplog.text and "invalid input shape" in caplog.text


def test_the_next_segment_tries_the_configured_voice_again(
    espeak: EspeakSynthesizer, manifest: dict[str, dict[str, Any]]
) -> None:
    primary = Crashing(espeak, crash_on={0})  # only the first piece of the first segment
    engine = engine_with(primary, espeak)
    first = list(engine.speak(manifest["fleurs_en_1972"]["translation_es"], "es"))
    second = list(engine.speak(manifest["fleurs_en_1728"]["translation_es"], "es"))
    assert len(first) >= 2 and {p.backend for p in first} == {"espeak"}
    assert len(second) >= 2 and {p.backend for p in second} == {"primary"}
    assert not any(p.fallback for p in second)
    assert primary.calls == 1 + len(second) and engine.stats.failures == {"primary": 1}
    assert engine.stats.fallbacks == len(first)


def test_a_backend_that_always_fails_is_tried_once_per_segment(
    espeak: EspeakSynthesizer, manifest: dict[str, dict[str, Any]]
) -> None:
    primary = Crashing(espeak, error=SynthesisError("no phonemes"))
    engine = engine_with(primary, espeak)
    for clip in ("fleurs_en_1972", "fleurs_en_1728"):
        pieces = list(engine.speak(manifest[clip]["translation_es"], "es"))
        assert len(pieces) >= 2 and {p.backend for p in pieces} == {"espeak"}
    assert engine.stats.failures["primary"] == 2 == primary.calls


def test_unavailable_backend_is_skipped_after_the_first_failure(
    espeak: EspeakSynthesizer, manifest: dict[str, dict[str, Any]]
) -> None:
    primary = Crashing(espeak, error=BackendUnavailable("model file missing"))
    engine = engine_with(primary, espeak)
    for clip in ("fleurs_en_1972", "fleurs_en_1728"):
        pieces = list(engine.speak(manifest[clip]["translation_es"], "es"))
        assert {p.backend for p in pieces} == {"espeak"}
    assert primary.calls == 1 and engine.stats.failures == {"primary": 1}


def test_edge_tts_missing_or_offline_falls_back(espeak: EspeakSynthesizer) -> None:
    edge = EdgeSynthesizer()
    with pytest.raises(SynthesisError, match=r"edge-tts"):
        edge.synthesize("Hola a todos.", "es")
    engine = TtsEngine(
        TtsConfig(backends={"es": ("edge",)}, fallback="espeak"), {"edge": edge, "espeak": espeak}
    )
    pieces = list(engine.speak("Hola a todos, gracias por venir.", "es"))
    assert pieces and {p.backend for p in pieces} == {"espeak"}
    assert engine.stats.failures["edge"] == 1


def _tone_mp3(seconds: float, rate: int, freq: float) -> bytes:
    """A real MP3 of a sine tone, encoded by ffmpeg (what edge-tts sends is MP3 too)."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed: apt-get install ffmpeg (./run setup does)")
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
         f"sine=frequency={freq}:sample_rate={rate}:duration={seconds}", "-ac", "1",
         "-c:a", "libmp3lame", "-b:a", "48k", "-f", "mp3", "pipe:1"],
        capture_output=True, timeout=60, check=True)
    return done.stdout


def _peak_hz(pcm: np.ndarray, rate: int) -> float:
    x = pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])


def _fake_edge_tts(mp3: bytes) -> tuple[types.ModuleType, list[tuple[str, str, str]]]:
    """An ``edge_tts`` module whose Communicate streams ``mp3`` the way the real one does:
    metadata messages between audio chunks of a few kB."""
    calls: list[tuple[str, str, str]] = []

    class Communicate:
        def __init__(self, text: str, voice: str, *, rate: str = "+0%") -> None:
            calls.append((text, voice, rate))

        async def stream(self) -> AsyncIterator[dict[str, Any]]:
            yield {"type": "WordBoundary", "offset": 0, "duration": 5_000_000, "text": "Hola"}
            for start in range(0, len(mp3), 4096):
                yield {"type": "audio", "data": mp3[start:start + 4096]}

    module = types.ModuleType("edge_tts")
    module.Communicate = Communicate  # type: ignore[attr-defined]
    return module, calls


def test_edge_tts_success_path_decodes_and_resamples_its_mp3(
    monkeypatch: pytest.MonkeyPatch, espeak: EspeakSynthesizer
) -> None:
    """The adapter on a good answer, without the network: a 16 kHz MP3 streamed in chunks
    comes back as 24 kHz int16 PCM of the same length and pitch; through the engine it is
    spoken by edge, at the engine's output rate, with no fallback."""
    mp3 = _tone_mp3(1.5, 16_000, 440.0)
    module, calls = _fake_edge_tts(mp3)
    monkeypatch.setitem(sys.modules, "edge_tts", module)
    edge = EdgeSynthesizer()

    audio = edge.synthesize("Hola a todos.", "es", speed=1.25)
    assert calls == [("Hola a todos.", "es-ES-AlvaroNeural", "+25%")]
    assert audio.rate == 24_000 and audio.pcm.dtype == np.int16
    assert abs(audio.duration - 1.5) < 0.15  # the MP3 frame padding and encoder delay, no more
    assert abs(_peak_hz(audio.pcm, audio.rate) - 440.0) < 3.0  # decoded at the right rate
    assert np.sqrt(np.mean(audio.pcm.astype(np.float64) ** 2)) > 1000  # a tone, not silence

    engine = TtsEngine(TtsConfig(backends={"es": ("edge",)}, fallback="espeak", output_rate=16_000),
                       {"edge": edge, "espeak": espeak})
    [piece] = list(engine.speak("Hola a todos.", "es", voice="es-MX-DaliaNeural"))
    assert (piece.backend, piece.voice, piece.fallback, piece.rate) == (
        "edge", "es-MX-DaliaNeural", False, 16_000)
    pcm = np.frombuffer(piece.pcm, dtype="<i2")
    assert pcm.size == piece.samples and 1.4 < piece.duration < 1.5 + 1.0  # tone, then a pause
    assert abs(_peak_hz(pcm[: 16_000], 16_000) - 440.0) < 3.0
    assert engine.stats.failures == {} and engine.stats.fallbacks == 0
    assert calls[-1][1] == "es-MX-DaliaNeural"


class Broken:
    name = "broken"

    def supports(self, lang: str) -> bool:
        return True

    def voices(self, lang: str) -> list[str]:
        return ["x"]

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        raise MemoryError("out of memory")


def test_when_every_backend_fails_the_segment_still_completes() -> None:
    config = TtsConfig(backends={"*": ("kokoro",)}, fallback="espeak")
    engine = TtsEngine(config, {"kokoro": Broken(), "espeak": Broken()})  # type: ignore[dict-item]
    pieces = list(engine.speak("Uno, dos, tres, cuatro, cinco, seis y siete.", "es"))
    assert len(pieces) >= 2 and pieces[-1].last
    assert {p.backend for p in pieces} == {"none"}
    assert all(p.samples > 0 and not any(p.pcm) for p in pieces)  # short silences
    assert engine.stats.silent == len(pieces)
    assert engine.stats.failures == {"kokoro": len(pieces), "espeak": len(pieces)}


@pytest.mark.parametrize("text", ["", "   \n\t ", "😀🎉", "...", "\x00\x07"])
def test_nothing_speakable_yields_nothing(espeak: EspeakSynthesizer, text: str) -> None:
    engine = TtsEngine(TtsConfig(backends={"*": ("espeak",)}), {"espeak": espeak})
    assert list(engine.speak(text, "es")) == []
    assert engine.stats.empty == 1


def test_unspeakable_characters_are_dropped(espeak: EspeakSynthesizer) -> None:
    engine = TtsEngine(TtsConfig(backends={"*": ("espeak",)}), {"espeak": espeak})
    pieces = list(engine.speak("Hola 😀 a todos\u200b,\x00 ¿qué tal? ☃", "es"))
    assert " ".join(p.text for p in pieces) == "Hola a todos, ¿qué tal?"
    assert engine.stats.failures == {}


def test_very_long_text_is_cut_and_still_streams(
    espeak: EspeakSynthesizer, manifest: dict[str, dict[str, Any]]
) -> None:
    long_text = manifest["ljspeech_LJ001-0001_to_0032_continuous"]["transcript"] * 3
    config = TtsConfig(backends={"*": ("espeak",)}, max_chars=1200, split=SplitPolicy(max_words=20))
    engine = TtsEngine(config, {"espeak": espeak})
    pieces = list(engine.speak(long_text, "en"))
    spoken = " ".join(p.text for p in pieces)
    assert len(spoken) <= 1200 and long_text.startswith(spoken)
    assert all(len(p.text.split()) <= 20 for p in pieces)
    assert engine.stats.truncated == 1 and pieces[-1].last


def test_voice_is_stable_per_speaker_and_differs_between_speakers(
    espeak: EspeakSynthesizer,
) -> None:
    engine = TtsEngine(TtsConfig(backends={"*": ("espeak",)}), {"espeak": espeak})
    voices = espeak.voices("es")
    chosen = {}
    for speaker in ("Ana", "Bruno", "Carla", "Diego", "Elena", "Fabio"):
        expected = pick_voice(voices, "session-7", speaker)
        pieces = list(engine.speak("Buenos días.", "es", session="session-7", speaker=speaker))
        assert {p.voice for p in pieces} == {expected}
        chosen[speaker] = (expected, np.frombuffer(pieces[0].pcm, dtype="<i2"))
    assert len({voice for voice, _ in chosen.values()}) >= 3
    # Different voices really sound different (not the same waveform under two names).
    by_voice = {voice: pcm for voice, pcm in chosen.values()}
    for a, b in itertools.combinations(by_voice.values(), 2):
        assert a.size != b.size or not np.array_equal(a, b)


def test_language_without_configured_backend_uses_the_wildcard(espeak: EspeakSynthesizer) -> None:
    engine = TtsEngine(TtsConfig(), {"espeak": espeak})
    pieces = list(engine.speak("Bonjour à tous, merci d'être venus.", "fr"))
    assert {p.backend for p in pieces} == {"espeak"}
    assert pieces[0].voice.startswith("fr")


def test_warm_up_loads_the_chain_without_counting_a_segment(espeak: EspeakSynthesizer) -> None:
    primary = Crashing(espeak, error=BackendUnavailable("not installed"))
    engine = engine_with(primary, espeak)
    assert engine.warm_up(["es", "de"]) == {"es": "espeak", "de": "espeak"}
    assert engine.stats.segments == 0 and engine.stats.failures == {"primary": 1}


class Garbage:
    """A backend that returns unusable audio instead of raising."""

    name = "garbage"

    def __init__(self, pcm: np.ndarray, rate: int) -> None:
        self.audio = Audio(pcm, rate)  # type: ignore[arg-type]

    def supports(self, lang: str) -> bool:
        return True

    def voices(self, lang: str) -> list[str]:
        return ["g"]

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        return self.audio


@pytest.mark.parametrize(
    ("pcm", "rate"),
    [
        (np.zeros(24_000, dtype=np.float32), 24_000),  # silence
        (np.zeros(0, dtype=np.int16), 22_050),  # nothing
        (np.array(["a", "b"]), 24_000),  # not audio
        (np.ones(100, dtype=np.float32), 0),  # no sample rate
    ],
    ids=["silence", "empty", "not-audio", "zero-rate"],
)
def test_unusable_audio_counts_as_a_failure(
    espeak: EspeakSynthesizer, pcm: np.ndarray, rate: int
) -> None:
    engine = TtsEngine(
        TtsConfig(backends={"*": ("kokoro",)}, fallback="espeak"),
        {"kokoro": Garbage(pcm, rate), "espeak": espeak},  # type: ignore[dict-item]
    )
    pieces = list(engine.speak("Buenos días a todos.", "es"))
    assert [p.backend for p in pieces] == ["espeak"]
    assert engine.stats.failures == {"kokoro": 1} and engine.stats.fallbacks == 1


def test_a_faster_pace_shortens_the_pauses_more_than_the_words(espeak: EspeakSynthesizer) -> None:
    """The pause after a sentence or clause is scaled by the pace squared: a listener who is
    behind catches up on silence first."""
    engine = TtsEngine(TtsConfig(backends={"*": ("espeak",)}), {"espeak": espeak})
    text = "Buenos días a todos. Bienvenidos a la conferencia."
    calm = list(engine.speak(text, "es"))
    hurried = list(engine.speak(text, "es", speed=1.5))
    pause = engine.config.sentence_pause_s

    def trailing_silence(p: Any) -> float:
        pcm = np.frombuffer(p.pcm, dtype="<i2")
        loud = np.flatnonzero(np.abs(pcm) > 100)
        return (len(pcm) - 1 - loud[-1]) / p.rate

    assert trailing_silence(calm[0]) == pytest.approx(pause, abs=0.06)
    assert trailing_silence(hurried[0]) == pytest.approx(pause / 1.5**2, abs=0.06)
    assert sum(p.duration for p in hurried) < sum(p.duration for p in calm) / 1.2
