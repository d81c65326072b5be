"""Per-language backend configuration and stable voice choice."""

from __future__ import annotations

import pytest

from workers.tts.config import TtsConfig, parse_backends
from workers.tts.voices import pick_voice, voice_index


def test_parse_backends_with_chains_and_wildcard() -> None:
    table = parse_backends(" es=edge>kokoro , en=piper,*=espeak ,")
    assert table == {"es": ("edge", "kokoro"), "en": ("piper",), "*": ("espeak",)}


@pytest.mark.parametrize("spec", ["", "es", "es=", "=kokoro", "es=festival", "es=kokoro>nope"])
def test_bad_backend_specs_are_rejected_with_a_reason(spec: str) -> None:
    with pytest.raises(ValueError, match=r"TTS backend"):
        parse_backends(spec)


def test_chain_per_language_ends_with_the_fallback() -> None:
    config = TtsConfig(backends=parse_backends("es=edge>kokoro,en-gb=piper,*=espeak"))
    assert config.chain("es") == ["edge", "kokoro", "espeak"]
    assert config.chain("es-MX") == ["edge", "kokoro", "espeak"]
    assert config.chain("en-GB") == ["piper", "espeak"]
    assert config.chain("de") == ["espeak"]
    assert TtsConfig().chain("es") == ["kokoro", "espeak"]
    assert TtsConfig().chain("en") == ["piper", "espeak"]


def test_from_env() -> None:
    config = TtsConfig.from_env(
        {"S2ST_TTS_BACKENDS": "es=espeak", "S2ST_TTS_FIRST_WORDS": "3", "S2ST_TTS_MAX_CHARS": "99"}
    )
    assert config.chain("es") == ["espeak"] and config.chain("fr") == ["espeak"]
    assert config.split.first_words == 3 and config.max_chars == 99
    with pytest.raises(ValueError):
        TtsConfig.from_env({"S2ST_TTS_FALLBACK": "festival"})


def test_voice_choice_is_stable_and_spread() -> None:
    voices = ["a", "b", "c", "d", "e"]
    assert pick_voice(voices) == "a"
    assert pick_voice(voices, "s1", "Ana") == pick_voice(list(voices), "s1", "Ana")
    picks = {pick_voice(voices, "s1", f"speaker-{i}") for i in range(40)}
    assert picks == set(voices)
    # Fixed values: the hash must not change between processes or releases.
    assert voice_index(5, "s1", "Ana") == voice_index(5, "s1", "Ana")
    with pytest.raises(ValueError):
        pick_voice([], "s1", "Ana")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"S2ST_TTS_FIRST_WORDS": "four"}, "S2ST_TTS_FIRST_WORDS must be an integer, not 'four'"),
        ({"S2ST_TTS_LOUDNESS_DBFS": "loud"}, "S2ST_TTS_LOUDNESS_DBFS must be a number"),
        ({"S2ST_TTS_MAX_WORDS": "2"}, "S2ST_TTS_FIRST_WORDS/S2ST_TTS_MAX_WORDS: need"),
        ({"S2ST_TTS_BACKENDS": "es=festival"}, "S2ST_TTS_BACKENDS: unknown TTS backend"),
        ({"S2ST_TTS_FALLBACK": "festival"}, "S2ST_TTS_FALLBACK: unknown backend 'festival'"),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TtsConfig.from_env(env)


def test_environment_sets_the_split_and_level() -> None:
    config = TtsConfig.from_env({"S2ST_TTS_FIRST_WORDS": "2", "S2ST_TTS_LOUDNESS_DBFS": "-20",
                                 "S2ST_TTS_BACKENDS": "es=espeak", "S2ST_TTS_FALLBACK": ""})
    assert config.split.first_words == 2 and config.target_dbfs == -20.0
    assert config.chain("es") == ["espeak"] and config.chain("en") == []
