"""Pieces that need no model: guards, timeline, chunks, text normalization, settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from workers.asr.decoder import DecodedWord, compression_ratio
from workers.asr.guards import (
    GuardConfig,
    SpeechGate,
    cut_at_audio_end,
    drop_squeezed_repeats,
    is_stock_hallucination,
    strip_repetitions,
)
from workers.asr.streaming import PcmBlock, RecognizerState, StreamConfig, StreamingRecognizer
from workers.asr.textnorm import normalize_text, word_error_rate
from workers.asr.timeline import Timeline


def words(text: str, step: float = 0.3) -> list[DecodedWord]:
    return [DecodedWord(" " + w, i * step, (i + 1) * step, 0.9) for i, w in enumerate(text.split())]


def texts(ws: list[DecodedWord]) -> str:
    return " ".join(w.text.strip() for w in ws)


def test_repetition_loops_are_cut() -> None:
    cfg = GuardConfig()
    assert texts(strip_repetitions(words("no no no no no no"), cfg)) == "no no no"
    loop = "thank you thank you thank you thank you"
    assert texts(strip_repetitions(words(loop), cfg)) == "thank you thank you"
    phrase = "printing then for our purpose printing then for our purpose printing"
    assert texts(strip_repetitions(words(phrase), cfg)) == "printing then for our purpose"
    ordinary = "one mississippi two mississippi three mississippi"
    assert texts(strip_repetitions(words(ordinary), cfg)) == ordinary


def test_repetition_of_committed_text_is_cut() -> None:
    cfg = GuardConfig()
    context = "may be considered as the art".split()
    out = strip_repetitions(words("may be considered as the art of"), cfg, context)
    assert out == []
    fresh = strip_repetitions(words("of making books"), cfg, context)
    assert texts(fresh) == "of making books"


def test_a_word_doubled_in_a_fraction_of_its_time_is_dropped() -> None:
    cfg = GuardConfig()
    # what tiny.en decoded of fleurs_en_1904's first 2 s: the second "however" lasts 0.1 s
    doubled = [DecodedWord(" However,", 0.0, 1.36, 0.9), DecodedWord(" however,", 1.36, 1.46, 0.6),
               DecodedWord(" due", 2.22, 2.24, 0.9)]
    assert texts(drop_squeezed_repeats(doubled, cfg)) == "However, due"
    # ... also against the last word already committed
    assert texts(drop_squeezed_repeats(doubled[1:], cfg, before="However,")) == "due"
    # a speaker's own repeat takes a word's time, and a short word a short time
    said = [DecodedWord(" no,", 0.0, 0.25, 0.9), DecodedWord(" no", 0.3, 0.5, 0.9),
            DecodedWord(" very", 0.6, 0.9, 0.9), DecodedWord(" very", 0.9, 1.15, 0.9)]
    assert texts(drop_squeezed_repeats(said, cfg)) == "no, no very very"
    assert texts(drop_squeezed_repeats(doubled, GuardConfig(min_repeat_s_per_char=0))) == \
        "However, however, due"


def test_zero_length_words_at_the_audio_end_are_cut() -> None:
    ws = [DecodedWord(" a", 0.0, 0.4, 1.0), DecodedWord(" b", 0.4, 0.9, 1.0),
          DecodedWord(" c", 1.0, 1.0, 1.0)]
    assert [w.text for w in cut_at_audio_end(ws, 1.0, GuardConfig())] == [" a", " b"]
    assert len(cut_at_audio_end(ws, 3.0, GuardConfig())) == 3


def test_stock_phrases_and_compression_ratio() -> None:
    assert is_stock_hallucination(" Thanks for watching!")
    assert not is_stock_hallucination("Thanks for coming to the meeting.")
    assert compression_ratio("la " * 100) > 2.4
    assert compression_ratio("An ordinary sentence of normal speech.") < 2.0


def test_speech_gate_scores_silence_and_noise_as_non_speech() -> None:
    gate = SpeechGate()
    rng = np.random.default_rng(0)
    gate.push(np.zeros(16000, dtype=np.float32))
    gate.push((rng.standard_normal(16000) * 0.02).astype(np.float32))
    assert gate.covered_until() == pytest.approx(2.0, abs=0.04)
    assert gate.speech_seconds(0.0, 2.0) == 0.0
    assert not gate.has_speech(0.0, 2.0)


def test_timeline_maps_positions_across_gaps() -> None:
    tl = Timeline()
    tl.append(1000, 8000, 100.0, 100.0 + 7999 / 16000)
    tl.append(9000, 8000, 100.5, 100.5 + 7999 / 16000)  # contiguous: merged
    tl.append(40000, 8000, 103.0, 103.0 + 7999 / 16000)  # the capture side dropped audio
    assert len(tl) == 24000
    assert tl.offset_at(0) == 1000
    assert tl.offset_at(16000) == 40000
    assert tl.offset_at(24000) == 48000
    assert tl.capture_time_at(8000) == pytest.approx(100.5)
    assert tl.capture_time_at(16000 + 8000 - 1) == pytest.approx(103.0 + 7999 / 16000)
    assert tl.position_of(40000) == 16000
    assert tl.position_of(20000) is None
    assert tl.next_offset == 48000


def test_chunks_from_pcm_bytes() -> None:
    pcm = (np.arange(800, dtype="<i2") * 3).tobytes()
    chunk = PcmBlock.from_pcm(pcm, utterance=2, offset=16000, capture_start=5.0)
    assert chunk.samples == 800
    assert chunk.capture_end == pytest.approx(5.0 + 799 / 16000)
    assert chunk.float_audio().dtype == np.float32
    with pytest.raises(ValueError, match="odd number"):
        PcmBlock.from_pcm(b"\x00\x01\x02", utterance=0, offset=0, capture_start=0.0)
    with pytest.raises(ValueError, match="16000 Hz"):
        PcmBlock.from_pcm(pcm, utterance=0, offset=0, capture_start=0.0, rate=8000)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="task"):
        StreamConfig(task="summarize")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trim"):
        StreamConfig(trim_sentence_s=20.0, trim_word_s=10.0)


def test_state_round_trips_and_closed_utterances_are_ignored() -> None:
    state = RecognizerState(7, 123456, "earlier text", "fr")
    assert RecognizerState.from_dict(state.to_dict()) == state
    closed = RecognizerState(3, 48000, "done.", None, utterance_closed=True)
    rec = StreamingRecognizer(None, StreamConfig(), state=closed)
    replayed = PcmBlock(3, 40000, np.zeros(8000, np.int16), 0.0, 0.5, utt_end=True)
    assert rec.feed(replayed, decode=False) == []
    assert rec.utterance is None
    assert rec.snapshot() == RecognizerState(3, None, "done.", None, utterance_closed=True)


def test_normalization_and_wer() -> None:
    assert normalize_text("Hello, World!  It’s   re-used.") == "hello world it's re used"
    assert word_error_rate(["the cat sat"], ["The cat, sat."]) == 0.0
    assert word_error_rate(["a b c d"], ["a x c"]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        word_error_rate(["a"], ["a", "b"])


def test_a_decode_that_loops_commits_nothing(manifest: dict[str, Any]) -> None:
    """Whisper's compression-ratio rule: a loop whose period is too long for the n-gram cutter
    (ten words) is a failed decode, agreed on by nothing; a sane decode after it commits."""
    from workers.asr.audio import load_audio
    from workers.asr.decoder import Hypothesis
    from workers.asr.simulate import make_chunks

    audio = load_audio(manifest["ljspeech_LJ001-0001"]["path"])[: 3 * 16000]
    rec = StreamingRecognizer(None, StreamConfig())
    phrase = "the printer set his type by hand in the shop"
    loop = " ".join([phrase] * 4)

    def hypothesis(text: str) -> Hypothesis:
        ws = words(text, step=0.06)
        return Hypothesis(ws, text, "en", 1.0, 0.0, -0.2, compression_ratio(text), len(ws),
                          duration=3.0)

    assert compression_ratio(loop) > GuardConfig().compression_ratio_threshold
    assert texts(strip_repetitions(words(loop), GuardConfig())) == loop  # too long to see
    committed: list[str] = []
    for i, chunk in enumerate(make_chunks(audio)):
        rec.feed(chunk, decode=False)
        pending = rec.prepare()
        if pending is None:
            continue
        text = loop if i < 4 else phrase
        committed += [u.text for u in rec.apply(pending, hypothesis(text))
                      if u.kind == "committed" and u.text]
    assert committed, "the sane hypotheses after the loop were not committed"
    assert normalize_text(" ".join(committed)) in normalize_text(phrase)


def test_auto_task_translates_only_sessions_of_english_only_rooms() -> None:
    """S2ST_ASR_TASK=auto: Whisper's own translation where every listener wants English."""
    from types import SimpleNamespace

    from workers.asr.stage import ASRConfig, ASRStage

    stage = ASRStage(ASRConfig(model="base", task="auto"))
    stage.decoder = SimpleNamespace(multilingual=True)  # type: ignore[assignment]

    def task(source: str, targets: list[str]) -> str:
        ctx = SimpleNamespace(session=SimpleNamespace(source_lang=source), targets=targets)
        return stage._stream_config(ctx).task  # type: ignore[arg-type]

    assert task("fr", ["en"]) == "translate"
    assert task("auto", ["en"]) == "translate"
    assert task("en", ["en"]) == "transcribe"
    assert task("fr", ["en", "es"]) == "transcribe"  # the Spanish listeners need French text
    assert task("fr", []) == "transcribe"
    stage.config.task = "transcribe"
    assert task("fr", ["en"]) == "transcribe"
