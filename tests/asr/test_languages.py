"""The multilingual base model: language detection per utterance, and the translate task."""

from __future__ import annotations

import pytest

from workers.asr.audio import load_audio
from workers.asr.decoder import WhisperDecoder
from workers.asr.simulate import make_chunks
from workers.asr.streaming import StreamConfig, StreamingRecognizer, Update
from workers.asr.textnorm import word_error_rate

pytestmark = pytest.mark.slow


def stream(rec: StreamingRecognizer, audio) -> list[Update]:
    updates: list[Update] = []
    for chunk in make_chunks(audio):
        updates += rec.feed(chunk)
    return updates + rec.end_utterance()


@pytest.mark.parametrize("clip, lang", [("fleurs_fr_1853", "fr"), ("fleurs_de_1739", "de")])
def test_auto_detects_french_and_german(
    base_decoder: WhisperDecoder, manifest, clip: str, lang: str
) -> None:
    row = manifest[clip]
    rec = StreamingRecognizer(base_decoder, StreamConfig(language="auto"))
    updates = [u for u in stream(rec, load_audio(row["path"])) if u.kind == "committed"]
    assert updates and {u.source_lang for u in updates} == {lang}
    assert {u.lang for u in updates} == {lang}
    text = " ".join(u.text for u in updates)
    assert word_error_rate([row["transcript"]], [text]) < 0.6, text


def test_translate_task_gives_english(base_decoder: WhisperDecoder, manifest) -> None:
    row = manifest["fleurs_es_1764"]
    config = StreamConfig(language="es", task="translate")
    updates = [
        u
        for u in stream(StreamingRecognizer(base_decoder, config), load_audio(row["path"]))
        if u.kind == "committed"
    ]
    text = " ".join(u.text for u in updates).lower()
    assert updates and all(u.lang == "en" and u.source_lang == "es" for u in updates)
    words = text.replace(".", " ").replace(",", " ").split()
    english = sum(w in {"the", "was", "of", "to", "that", "not", "could", "people"} for w in words)
    spanish = sum(w in {"fue", "que", "las", "los", "una", "pudo", "gente"} for w in words)
    assert english >= 3 and spanish == 0, text


def test_english_only_model_refuses_other_languages(tiny_decoder: WhisperDecoder) -> None:
    with pytest.raises(ValueError, match="multilingual"):
        StreamingRecognizer(tiny_decoder, StreamConfig(language="fr"))
    with pytest.raises(ValueError, match="multilingual"):
        StreamingRecognizer(tiny_decoder, StreamConfig(task="translate"))
