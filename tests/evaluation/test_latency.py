"""The long-form latency figures (LongYAAL, StreamLAAL), the resegmentation under them and the
output word onsets, on small inputs whose values are worked out by hand in the comments.

The expected values were also checked once against OmniSTEval 0.1.10 (``YAALScorer``,
``LAALScorer``, ``align_sequences`` + ``process_alignment``) and mweralign 1.4.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bus.events import Hop, Speech
from ops.evaluation import quality
from ops.evaluation.latency import (
    OutputPiece,
    RefSegment,
    average_lagging,
    clip_latency,
    long_form,
    match_heard,
    mwer_segment,
    soft_segment,
    timed_words,
    word_onsets,
    yaal,
)
from ops.evaluation.manifest import Clip, Selected, load
from ops.evaluation.report import build, markdown
from ops.evaluation.run import ClipRun, Piece
from ops.evaluation.score import reference_segments, score_clips, summarize

# -- YAAL of one segment ------------------------------------------------------------------

DELAYS = [1.0, 2.0, 3.0, 6.0, 7.0]  # from the segment's start; the segment lasts 4 s


def test_yaal_counts_the_words_before_the_recording_ends() -> None:
    # 5 words, reference of 4: gamma = max(5, 4) / 4, so word t is due at (t - 1) * 0.8 s
    lags = [1.0 - 0.0, 2.0 - 0.8, 3.0 - 1.6, 6.0 - 2.4, 7.0 - 3.2]  # 1, 1.2, 1.4, 3.6, 3.8
    # long form, the recording going on: every word counts, also after the segment's end
    assert yaal(DELAYS, 4.0, 4) == pytest.approx(sum(lags) / 5)  # 2.2
    assert yaal(DELAYS, 4.0, 4, recording_end=6.5) == pytest.approx(sum(lags[:4]) / 4)  # 1.8
    # a word at the recording's end is after it (d >= end), unlike LAAL's tau
    assert yaal(DELAYS, 4.0, 4, recording_end=6.0) == pytest.approx(sum(lags[:3]) / 3)  # 1.2
    # short form: cut at the segment's end too
    assert yaal(DELAYS, 4.0, 4, long_form=False) == pytest.approx(1.2)
    # LAAL over the same words keeps the first word at or after the end: (1+1.2+1.4+3.6)/4
    assert average_lagging(DELAYS, 4.0, 4, length_adaptive=True) == pytest.approx(1.8)


def test_yaal_edge_cases() -> None:
    assert yaal([], 4.0, 4) is None  # no output
    assert yaal([5.0, 6.0], 4.0, 2, recording_end=5.0) is None  # nothing before the end
    # ... where LAAL gives the first delay
    assert average_lagging([5.0, 6.0], 4.0, 2, length_adaptive=True) == 5.0
    # a reference longer than the output: gamma = 8 / 4, words due every 0.5 s
    assert yaal([1.0, 2.0], 4.0, 8) == pytest.approx((1.0 + 1.5) / 2)
    assert yaal([1.0], 0.0, 3) is None  # no source


# -- resegmentation --------------------------------------------------------------------------

TWO = [RefSegment(0.0, 4.0, "the cat sat"), RefSegment(5.0, 3.0, "on the mat")]


def test_resegmentation_of_a_clean_output_follows_the_references() -> None:
    words = "The cat sat. On the mat.".split()
    assert soft_segment(words, TWO) == [0, 0, 0, 1, 1, 1]
    assert mwer_segment(words, TWO) == [0, 0, 0, 1, 1, 1]


def test_mwer_segmentation_puts_inserted_words_with_the_word_before() -> None:
    assert mwer_segment("the cat sat extra on the mat".split(), TWO) == [0, 0, 0, 0, 1, 1, 1]
    # as mweralign 1.4.1 splits it: x a b y c | d z e f | g w h q
    three = [RefSegment(0, 1, "a b c"), RefSegment(1, 1, "d e f"), RefSegment(2, 1, "g h")]
    assert mwer_segment("x a b y c d z e f g w h q".split(), three) == \
        [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    # all in the first segment: the cheapest (2 deletions + 0 vs 3 deletions + 1 substitution)
    assert mwer_segment(["the", "cat"], TWO) == [0, 0]


def test_soft_segmentation_matches_by_characters_mwer_by_words() -> None:
    refs = [RefSegment(0, 1, "mes caso caso"), RefSegment(1, 1, "casa")]
    words = ["gato", "caso", "caso"]
    # SoftSegmenter: Jaccard of character sets, gato~caso 2/6, caso~caso 1, caso~casa 3/4:
    # gato-caso, caso-caso, caso-casa (2.08) beats caso-caso, caso-caso (2), so the last
    # word goes to the second segment
    assert soft_segment(words, refs) == [0, 0, 1]
    # mwer: gato for mes, caso, caso, casa left out: 2 edits, all in the first segment
    assert mwer_segment(words, refs) == [0, 0, 0]


def test_soft_segmentation_gives_an_unaligned_word_to_the_more_similar_side() -> None:
    # "xyz" aligns with nothing; "sat" shares nothing with it, "on" neither: ties go back
    assert soft_segment("the cat sat xyz on the mat".split(), TWO) == [0, 0, 0, 0, 1, 1, 1]
    # "no" is "on" by characters (Jaccard 1): aligned there, the second segment
    assert soft_segment("the cat sat no the mat".split(), TWO) == [0, 0, 0, 1, 1, 1]
    assert soft_segment([], TWO) == [] and soft_segment(["a"], []) == [None]


# -- LongYAAL and StreamLAAL on a long-form stream ------------------------------------------

def test_long_form_two_segments_worked_by_hand() -> None:
    segs = [RefSegment(0.0, 4.0, "el gato duerme."), RefSegment(5.0, 3.0, "la casa es grande.")]
    words = "el gato duerme mucho la casa es muy grande".split()
    delays = [1.0, 1.5, 4.5, 4.8, 6.0, 6.5, 7.0, 7.5, 9.0]
    # both resegmentations: el gato duerme mucho | la casa es muy grande
    assert soft_segment(words, segs) == mwer_segment(words, segs) == [0] * 4 + [1] * 5
    lf = long_form(words, delays, segs)  # the recording ends with the last segment, at 8 s
    # segment 1: d = 1, 1.5, 4.5, 4.8; L = 4; max(4 words, 3 reference) -> 1 s per word
    #   YAAL: all before 8 s: (1 + 0.5 + 2.5 + 1.8) / 4 = 1.45 (words after 4 s count)
    #   LAAL: up to the first d >= 4: (1 + 0.5 + 2.5) / 3 = 1.333
    # segment 2: d = 1, 1.5, 2, 2.5, 4 from 5 s; L = 3; max(5, 4) -> 0.6 s per word
    #   YAAL: before 8 - 5 = 3 s: (1 + 0.9 + 0.8 + 0.7) / 4 = 0.85
    #   LAAL: (1 + 0.9 + 0.8 + 0.7 + (4 - 2.4)) / 5 = 1.0
    assert lf.long_yaal == pytest.approx([1.45, 0.85])
    assert lf.stream_laal == pytest.approx([4 / 3, 1.0])
    assert lf.long_yaal_s == pytest.approx(1.15)
    assert lf.stream_laal_s == pytest.approx((4 / 3 + 1.0) / 2)


def test_long_form_single_segment_is_the_clip() -> None:
    seg = [RefSegment(0.0, 4.0, "a b c d")]
    lf = long_form(list("abcde"), DELAYS, seg)  # output longer than the reference
    # StreamLAAL on one segment from 0 is the clip's LAAL with the reference's length
    assert lf.stream_laal == pytest.approx([1.8])
    assert lf.stream_laal_s == pytest.approx(
        average_lagging(DELAYS, 4.0, 4, length_adaptive=True))
    # LongYAAL: the recording ends with the segment: words before 4 s, (1 + 1.2 + 1.4) / 3
    assert lf.long_yaal == pytest.approx([1.2])
    # a longer recording (the clip goes on after its one reference segment)
    assert long_form(list("abcde"), DELAYS, seg, recording_end=10.0).long_yaal_s == \
        pytest.approx(2.2)


def test_long_form_edge_cases() -> None:
    seg = [RefSegment(0.0, 4.0, "a b c d")]
    empty = long_form([], [], seg)  # no output
    assert empty.long_yaal == [None] and empty.stream_laal == [None]
    assert empty.long_yaal_s is None and empty.stream_laal_s is None
    late = long_form(["a", "b"], [5.0, 6.0], seg)  # all heard after the recording's end
    assert late.long_yaal_s is None and late.stream_laal_s == 5.0
    none = long_form(["a"], [1.0], [])  # no reference
    assert none.long_yaal == [] and none.long_yaal_s is None and none.stream_laal_s is None
    # a segment the output says nothing of is not scored; the other one is
    two = long_form("the cat sat".split(), [1.0, 2.0, 3.0], TWO)
    assert two.stream_laal[1] is None and two.long_yaal[1] is None
    assert two.stream_laal_s == pytest.approx((1.0 + (2 - 4 / 3) + (3 - 8 / 3)) / 3)
    with pytest.raises(ValueError):
        long_form(["a"], [], seg)


# -- output word onsets: measured where heard, else by characters ------------------------

def _piece(emitted: float, duration: float, text: str,
           starts: tuple[float | None, ...] = ()) -> OutputPiece:
    return OutputPiece(emitted, duration, text, 0.0, word_starts=starts)


def test_word_onsets_measured_and_estimated_between_them() -> None:
    # "uno dos tres": words start at characters 0, 4, 8 of 12; the piece lasts 1.4 s from 2 s
    assert word_onsets([_piece(2.0, 1.4, "uno dos tres")]) == pytest.approx(
        [2.0, 2.0 + 1.4 * 4 / 12, 2.0 + 1.4 * 8 / 12])  # nothing measured: the share
    timed = timed_words([_piece(2.0, 1.4, "uno dos tres", (0.2, None, 1.0))])
    # dos between uno (char 0, 0.2 s) and tres (char 8, 1.0 s): 0.2 + 0.8 * 4 / 8 = 0.6
    assert timed == [(pytest.approx(2.2), True), (pytest.approx(2.6), False),
                     (pytest.approx(3.0), True)]
    # only the middle one: uno from the piece's start, tres between dos and the piece's end
    assert word_onsets([_piece(2.0, 1.4, "uno dos tres", (None, 0.7, None))]) == \
        pytest.approx([2.0, 2.7, 2.0 + 0.7 + 0.7 * 4 / 8])
    # a time out of order is not trusted: dos is estimated from uno's 0.9 s to the end
    assert word_onsets([_piece(0.0, 1.4, "uno dos tres", (0.9, 0.5, None))]) == \
        pytest.approx([0.9, 0.9 + 0.5 * 4 / 12, 0.9 + 0.5 * 8 / 12])


def test_match_heard_finds_each_heard_word_in_its_piece() -> None:
    texts = ["Hola, mundo cruel.", "¿Qué tal?"]
    spans = [(0.0, 1.0), (1.3, 0.8)]  # 0.3 s of silence between them
    heard = [("hola", 0.1, 0.4), ("mundo", 0.5, 0.9), ("eh", 1.05, 1.2),  # in the gap
             ("que", 1.25, 1.6), ("tal", 1.7, 2.0)]  # que: middle in piece 2, starts before
    assert match_heard(texts, spans, heard) == [(0.1, 0.5, None), (0.0, pytest.approx(0.4))]
    assert match_heard(texts, spans, []) == [(None, None, None), (None, None)]
    with pytest.raises(ValueError):
        match_heard(texts, spans[:1], heard)


def test_clip_latency_says_where_the_onsets_came_from() -> None:
    pieces = [_piece(1.0, 1.0, "a b", (0.1, 0.5)), _piece(1.5, 1.0, "c")]
    lat = clip_latency(pieces, 4.0, 3, [RefSegment(0.0, 4.0, "a b c")])
    assert lat.as_dict()["word_timing"] == {"source": "mixed", "words": 3, "measured": 2}
    # onsets 1.1, 1.5, 2.0 (c: after the first piece ends); |X|/|Y| = 4/3
    al = (1.1 + (1.5 - 4 / 3) + (2.0 - 8 / 3)) / 3
    assert lat.al_s == pytest.approx(al) and lat.laal_s == pytest.approx(al)
    assert lat.stream_laal_s == pytest.approx(al) and lat.long_yaal_s == pytest.approx(al)
    lone = clip_latency([_piece(1.0, 1.0, "a b")], 4.0, 2)
    assert lone.as_dict()["word_timing"] == {"source": "characters", "words": 2, "measured": 0}
    assert lone.long_yaal_s is None  # no reference segments given
    none = clip_latency([], 4.0, 2, [RefSegment(0.0, 4.0, "a b")])
    assert none.as_dict()["word_timing"]["words"] == 0
    assert none.long_yaal_s is None and none.stream_laal_s is None


# -- through score_clips and the report ------------------------------------------------------

def _run(tmp_path: Path, reference: str = "hola adiós") -> ClipRun:
    t0 = 1_800_000_000.0
    clip = Clip("c", tmp_path / "c.flac", "en", 4.0, "hello goodbye", {"es": reference})
    run = ClipRun(Selected(clip, "es"), "r", "s", t0=t0, source_s=4.0,
                  transcripts=["hello goodbye"], translations=["hola", "adiós"])
    for seq, (text, at) in enumerate((("hola", 1.0), ("adiós", 3.0))):
        trace = [Hop(stage="tts", worker="w", t_in=t0 + at, t_out=t0 + at + 0.1)]
        event = Speech(room="r", session="s", seq=seq, capture_start=t0 + at - 1,
                       capture_end=t0 + at, emitted=t0 + at + 0.1, trace=trace, lang="es",
                       src_seq=seq, part=0, last=True, text=text, rate=16000, samples=8000,
                       duration=0.5, pcm=bytes(16000))
        run.pieces.append(Piece(seq, 0, text, t0 + at + 0.2, t0 + at + 0.3, 0.5, event))
    return run


def test_score_clips_times_words_from_the_transcriber(tmp_path: Path) -> None:
    # the audio transcribed back: hola at [0, 0.5), 0.3 s of silence, adiós at [0.8, 1.3)
    def hear(audio: object, lang: str) -> quality.Heard:
        return quality.Heard("hola adiós", (("Hola", 0.1, 0.4), ("adiós", 0.95, 1.2)))

    [measured] = score_clips([_run(tmp_path)], hear)
    [estimated] = score_clips([_run(tmp_path)], lambda audio, lang: "hola adiós")
    assert measured.back_transcript == "hola adiós" == estimated.back_transcript
    assert measured.latency.as_dict()["word_timing"]["source"] == "asr"
    assert estimated.latency.as_dict()["word_timing"]["source"] == "characters"
    # pieces available at 1.2 and 3.2 s: heard 0.1 and 0.15 s into them
    rate = 4.0 / 2
    assert estimated.latency.al_s == pytest.approx((1.2 + (3.2 - rate)) / 2)
    assert measured.latency.al_s == pytest.approx((1.3 + (3.35 - rate)) / 2)
    assert measured.latency.stream_laal_s == pytest.approx(measured.latency.laal_s)
    # the recording (4 s) is still on: both words count for LongYAAL
    assert measured.latency.long_yaal_s == pytest.approx(measured.latency.al_s)
    summary = summarize([measured, estimated])
    assert summary.word_timing == {"source": "mixed", "words": 4, "measured": 2}
    assert summary.long_form_segments == {"reference": 2, "long_yaal_scored": 2,
                                          "stream_laal_scored": 2}
    assert measured.latency.al_s is not None and estimated.latency.al_s is not None
    assert summary.long_yaal_s == pytest.approx(
        (measured.latency.al_s + estimated.latency.al_s) / 2)
    data = build([measured, estimated], [], {
        "command": "s2st eval", "started": "now", "manifest": "m", "parallel": 1,
        "asr_models": "tiny.en", "mt_backends": "x", "tts_backends": "y", "audio_s": 8.0})
    clip = data["per_clip"][0]
    assert clip["long_yaal_s"] == pytest.approx(measured.latency.long_yaal_s)
    assert clip["long_form_per_segment"]["stream_laal_s"] == [
        pytest.approx(measured.latency.stream_laal_s)]
    assert json.loads(json.dumps(data))["word_timing"]["measured"] == 2
    text = markdown(data, None)
    assert "LongYAAL" in text and "StreamLAAL" in text and "2 of 4 measured" in text
    assert "| 2/2 |" in text and "| 0/2 |" in text


def test_headline_shows_the_long_form_figures(tmp_path: Path) -> None:
    from ops.evaluation.cli import _headline

    [score] = score_clips([_run(tmp_path)], None)
    data = build([score], [], {})
    line = next(x for x in _headline(data) if x.startswith("long-form"))
    assert "LongYAAL" in line and "StreamLAAL" in line and "1/1" in line and "0/2" in line


def test_manifest_segments_become_the_reference_segments(tmp_path: Path) -> None:
    (tmp_path / "a.flac").write_bytes(b"x")
    rows = [{"id": "talk", "audio": "a.flac", "language": "en", "duration_s": 9.0,
             "translation_es": "uno. dos.",
             "segments": [{"start": 0.5, "end": 4.0, "translation_es": "uno."},
                          {"start": 5.0, "end": 8.5, "translation_es": "dos."}]},
            {"id": "times", "audio": "a.flac", "language": "en", "translation_es": "tres",
             "segments": [{"utt": "x", "start": 0.0, "end": 2.0}]}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    talk, times = load(path)
    run = ClipRun(Selected(talk, "es"), "r", "s", source_s=9.0)
    assert reference_segments(run) == [RefSegment(0.5, 3.5, "uno."),
                                       RefSegment(5.0, 3.5, "dos.")]
    assert talk.reference_segments("en") == []
    # segments without translations: the whole clip is the one reference segment
    run = ClipRun(Selected(times, "es"), "r", "s", source_s=2.5)
    assert reference_segments(run) == [RefSegment(0.0, 2.5, "tres")]
    assert reference_segments(ClipRun(Selected(times, "fr"), "r", "s", source_s=2.5)) == []
