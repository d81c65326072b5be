"""The evaluation's figures on hand-made inputs whose values are worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bus.events import Hop, Speech
from ops.evaluation import quality
from ops.evaluation.latency import (
    OutputPiece,
    average_lagging,
    clip_latency,
    end_offset,
    playback,
    start_offset,
    word_onsets,
)
from ops.evaluation.manifest import Clip, ManifestError, Selected, load, select
from ops.evaluation.run import ClipRun, Piece, session_id
from ops.evaluation.score import score_clips, stage_times


def _piece(emitted: float, duration: float, text: str = "x", source_end: float = 0.0,
           started: float | None = None, first: bool = True) -> OutputPiece:
    return OutputPiece(emitted, duration, text, source_end, started, first)


def test_playback_follows_simuleval() -> None:
    pieces = [_piece(2.0, 1.0), _piece(2.5, 1.0), _piece(6.0, 0.5)]
    # s1 = d1; s2 = max(e1, d2): it waits for the first to end; s3 = d3 after a silence
    assert playback(pieces) == [(2.0, 3.0), (3.0, 4.0), (6.0, 6.5)]
    assert start_offset(pieces) == 2.0
    assert end_offset(pieces, 5.0) == pytest.approx(1.5)
    assert start_offset([]) is None and end_offset([], 5.0) is None


def test_word_onsets_spread_over_the_piece_by_characters() -> None:
    onsets = word_onsets([_piece(2.0, 1.4, "uno dos"), _piece(2.0, 1.0, "tres")])
    # "uno dos" has 7 characters: "dos" starts at 4/7 of the piece; "tres" waits for it
    assert onsets == pytest.approx([2.0, 2.8, 3.4])


def test_average_lagging_and_its_length_adaptive_variant() -> None:
    delays = [1.0, 2.0, 3.0, 6.0, 7.0]
    # |X| = 4 s, |Y| = 4 words: rate 1 s/word; tau = 4 (the first delay >= |X|)
    assert average_lagging(delays, 4.0, 4) == pytest.approx((1 + 1 + 1 + 3) / 4)
    # a 2-word reference rewards the 5-word output (rate 2 s/word) ...
    assert average_lagging(delays, 4.0, 2) == pytest.approx((1 + 0 - 1 + 0) / 4)
    # ... LAAL does not: |Y| becomes max(2, 5) = 5, rate 0.8
    assert average_lagging(delays, 4.0, 2, length_adaptive=True) == pytest.approx(
        (1 + 1.2 + 1.4 + 3.6) / 4)
    assert average_lagging([5.0, 6.0], 4.0, 2) == 5.0  # first output after the source
    assert average_lagging([], 4.0, 2) is None
    assert average_lagging([1.0, 2.0], 4.0, None) == pytest.approx((1 + 0) / 2)  # |Y| = |Y_hat|


def test_clip_latency_measures_segments_from_the_player() -> None:
    pieces = [_piece(2.0, 1.0, "a b", source_end=1.0, started=2.2),
              _piece(2.1, 1.0, "c", source_end=1.0, started=3.2, first=False),
              _piece(5.0, 1.0, "d", source_end=4.0, started=5.1)]
    lat = clip_latency(pieces, 4.5, 4)
    assert lat.segment_latency_s == pytest.approx([1.2, 1.1])
    assert lat.start_offset_s == 2.0 and lat.end_offset_s == pytest.approx(1.5)
    assert lat.al_s is not None and lat.laal_s is not None and lat.laal_s <= lat.al_s + 1e-9


def test_wer_uses_whisper_normalization() -> None:
    assert quality.wer_counts("Mr. Smith paid $20.", "mister smith paid twenty dollars",
                              "en") == (0, 4)
    assert quality.wer_counts("the cat sat", "the cat", "en") == (1, 3)
    assert quality.wer_counts("el gato", "", "es") == (2, 2)
    assert quality.normalize_for_wer("¡Hola, Señor!", "es") == "hola señor"
    # words a FLEURS reader said in brackets count in the reference
    assert quality.wer_counts("The ratio (dividing by twelve) is 3.", "the ratio dividing by "
                              "twelve is 3", "en") == (0, 7)


def test_bleu_chrf_and_asr_bleu() -> None:
    ref = "El gato está sobre la mesa de la cocina."
    assert quality.bleu([ref], [ref]) == pytest.approx(100.0)
    assert quality.chrf([ref], [ref]) == pytest.approx(100.0)
    assert quality.bleu(["perro"], [ref]) < 5.0
    # the back-transcription is compared without case and punctuation, on both sides
    assert quality.asr_bleu(["el gato está sobre la mesa de la cocina"], [ref]) == \
        pytest.approx(100.0)
    assert quality.bleu(["el gato está sobre la mesa de la cocina"], [ref]) < 100.0


def test_manifest_selection(tmp_path: Path) -> None:
    (tmp_path / "a.flac").write_bytes(b"x")
    rows = [
        {"id": "en1", "audio": "a.flac", "language": "en", "transcript": "hi",
         "transcript_quality": "reference", "translation_es": "hola"},
        {"id": "en2", "audio": str(tmp_path / "a.flac"), "language": "en",
         "transcript": "guess", "transcript_quality": "pseudo"},
        {"id": "fr1", "audio": "a.flac", "language": "fr", "translation_en": "hello"},
        {"id": "mix", "audio": "a.flac", "language": "en+de", "transcript": "x"},
        {"id": "gone", "audio": "missing.flac", "language": "en", "transcript": "x"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    clips = load(path)
    assert clips[0].audio == tmp_path / "a.flac" and clips[1].transcript is None
    chosen, skipped = select(clips)
    assert [(s.clip.id, s.target) for s in chosen] == [("en1", "es"), ("fr1", "en")]
    why = {s.id: s.why for s in skipped}
    assert "no reference" in why["en2"] and "one language" in why["mix"]
    assert "no audio file" in why["gone"]
    chosen, skipped = select(clips, target="fr", patterns=["en*", "fr1"])
    assert [s.clip.id for s in chosen] == ["en1"]  # en2: no transcript, no French reference
    assert {s.id: s.why for s in skipped}["fr1"] == "already in fr"
    with pytest.raises(ManifestError, match="no clip matches nothing"):
        select(clips, patterns=["nothing"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(ManifestError, match=r"bad\.jsonl:1"):
        load(bad)


def test_session_ids_are_valid_and_unique() -> None:
    taken: set[str] = set()
    assert session_id("fleurs_en_1904", taken) == "fleurs_en_1904"
    assert session_id("fleurs_en_1904", taken) == "fleurs_en_1904-2"
    assert session_id("a clip/with:odd{chars}", taken) == "a-clip-with-odd-chars"


def _speech(seq: int, part: int, capture_end: float, t: float) -> Speech:
    trace = [Hop(stage="asr", worker="w", t_in=t + 0.4, t_out=t + 0.6),
             Hop(stage="mt", worker="w", t_in=t + 0.7, t_out=t + 0.75),
             Hop(stage="tts", worker="w", t_in=t + 0.8, t_out=t + 1.0)]
    return Speech(room="r", session="s", seq=seq, capture_start=capture_end - 1,
                  capture_end=capture_end, emitted=t + 1.05, trace=trace, lang="es", src_seq=seq,
                  part=part, last=True, text="hola", rate=16000, samples=1600,
                  duration=0.1, pcm=bytes(3200))


def test_stage_times_add_up_to_the_segment_latency() -> None:
    t0 = 1_800_000_000.0
    clip = Clip("c", Path("c.flac"), "en", 5.0, "hello", {"es": "hola"})
    run = ClipRun(Selected(clip, "es"), "r", "s", t0=t0, source_s=5.0,
                  transcripts=["hello"], translations=["hola"])
    for seq, end in enumerate((t0 + 1.0, t0 + 3.0)):
        event = _speech(seq, 0, end, end)
        run.pieces.append(Piece(seq, 0, "hola", end + 1.2, end + 1.5, 0.1, event))
    stages = stage_times(run)
    assert list(stages) == ["capture->asr", "asr", "asr->mt", "mt", "mt->tts", "tts",
                            "tts->written", "written->player", "player"]
    for i in range(2):
        assert sum(v[i] for v in stages.values()) == pytest.approx(1.5)
    [score] = score_clips([run], lambda audio, lang: "hola" if len(audio) else "")
    assert score.wer == 0.0 and score.bleu is not None and score.asr_bleu is not None
    assert score.latency.segment_latency_s == pytest.approx([1.5, 1.5])
    assert score.back_transcript == "hola"
