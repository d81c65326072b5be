"""Clause-boundary holding: what is released when, and with which provenance."""

from __future__ import annotations

import pytest

from workers.mt.segmenter import ClauseSegmenter, Piece, Span


def piece(seq: int, text: str, final: bool = False, utterance: str = "u1", lang: str = "en") -> Piece:
    # each piece covers 1 s of audio: samples [seq*16000, (seq+1)*16000), capture 100+seq s
    return Piece(seq, text, lang, utterance, seq * 16000, (seq + 1) * 16000, 100.0 + seq, 101.0 + seq, final)


def feed(seg: ClauseSegmenter, texts: list[str], start_seq: int = 1) -> list[Span]:
    out: list[Span] = []
    for i, text in enumerate(texts):
        out += seg.push(piece(start_seq + i, text), now=float(i))
    return out


def test_mid_sentence_text_is_held_until_the_sentence_ends() -> None:
    seg = ClauseSegmenter()
    assert feed(seg, ["We will meet", "at the"]) == []
    assert seg.held_text == "We will meet at the"
    spans = seg.push(piece(3, "station."), now=2.0)
    assert [s.text for s in spans] == ["We will meet at the station."]
    span = spans[0]
    assert (span.first_seq, span.last_seq, span.reason) == (1, 3, "boundary")
    assert (span.sample_start, span.sample_end) == (16000, 64000)
    assert (span.capture_start, span.capture_end) == (101.0, 104.0)
    assert (span.resume_seq, span.resume_offset) == (4, 0)
    assert seg.held_text == ""


def test_boundary_inside_a_piece_splits_it_proportionally() -> None:
    seg = ClauseSegmenter()
    spans = seg.push(piece(1, "Hello there. Then we"), now=0.0)
    assert [s.text for s in spans] == ["Hello there."]
    span = spans[0]
    fraction = len("Hello there.") / len("Hello there. Then we")
    assert span.sample_end == 16000 + round(16000 * fraction)
    assert abs(span.capture_end - (101.0 + fraction)) < 1e-9
    assert (span.resume_seq, span.resume_offset) == (1, len("Hello there."))
    assert seg.held_text == "Then we"
    spans = seg.push(piece(2, "go home!"), now=1.0)
    assert spans[0].text == "Then we go home!"
    assert (spans[0].first_seq, spans[0].last_seq) == (1, 2)
    assert spans[0].sample_start == span.sample_end


def test_several_sentences_in_one_piece_go_out_together_up_to_the_last_boundary() -> None:
    seg = ClauseSegmenter()
    spans = seg.push(piece(1, "Yes. No? Maybe! And"), now=0.0)
    assert [s.text for s in spans] == ["Yes. No? Maybe!"]
    assert seg.held_text == "And"


def test_comma_is_a_boundary_only_after_enough_words() -> None:
    seg = ClauseSegmenter(min_clause_words=5)
    assert feed(seg, ["Well, I", "think"]) == []
    spans = seg.push(piece(3, "that we should go now, because it"), now=2.0)
    assert [s.text for s in spans] == ["Well, I think that we should go now,"]
    assert seg.held_text == "because it"


def test_abbreviations_initials_and_decimals_are_not_boundaries() -> None:
    seg = ClauseSegmenter()
    assert feed(seg, ["Mr. Smith and J. R. Tolkien paid 3.5 dollars", "e.g. for bread"]) == []
    spans = seg.push(piece(3, "today."), now=2.0)
    assert len(spans) == 1 and spans[0].text.startswith("Mr. Smith")


def test_timeout_releases_held_text() -> None:
    seg = ClauseSegmenter(hold_timeout_s=1.5)
    assert seg.push(piece(1, "and then the"), now=10.0) == []
    assert seg.poll(11.0) == []
    spans = seg.poll(11.5)
    assert [(s.text, s.reason) for s in spans] == [("and then the", "timeout")]
    assert seg.poll(20.0) == []


def test_timeout_of_a_remainder_counts_from_its_arrival() -> None:
    seg = ClauseSegmenter(hold_timeout_s=1.5)
    seg.push(piece(1, "we will"), now=0.0)
    seg.push(piece(2, "go. But"), now=1.4)  # releases "we will go.", holds "But"
    assert seg.poll(1.6) == []
    assert [s.text for s in seg.poll(2.9)] == ["But"]


def test_final_piece_releases_everything() -> None:
    seg = ClauseSegmenter()
    feed(seg, ["this is the end of"])
    spans = seg.push(piece(2, "my talk", final=True), now=1.0)
    assert [(s.text, s.reason) for s in spans] == [("this is the end of my talk", "final")]


def test_empty_final_piece_still_ends_the_utterance() -> None:
    seg = ClauseSegmenter()
    feed(seg, ["unfinished words"])
    spans = seg.push(piece(2, "   ", final=True), now=1.0)
    assert [(s.text, s.last_seq, s.resume_seq) for s in spans] == [("unfinished words", 1, 3)]


def test_new_utterance_or_language_releases_the_old_one_first() -> None:
    seg = ClauseSegmenter()
    seg.push(piece(1, "first part"), now=0.0)
    spans = seg.push(piece(2, "second", utterance="u2"), now=1.0)
    assert [(s.text, s.reason, s.utterance) for s in spans] == [("first part", "switch", "u1")]
    spans = seg.push(piece(3, "zweite", utterance="u2", lang="de"), now=2.0)
    assert [(s.text, s.lang) for s in spans] == [("second", "en")]
    assert seg.flush()[0].lang == "de"


def test_a_switch_span_resumes_at_the_piece_that_caused_it() -> None:
    seg = ClauseSegmenter()
    seg.push(piece(1, "first part"), now=0.0)
    (span,) = seg.push(piece(2, "second", utterance="u2"), now=1.0)
    # piece 2 is held, not translated: a takeover must re-feed it
    assert (span.last_seq, span.resume_seq, span.resume_offset) == (1, 2, 0)


def test_run_on_text_is_released_after_max_words() -> None:
    seg = ClauseSegmenter(max_words=10)
    spans = feed(seg, ["one two three four five six", "seven eight nine ten eleven"])
    assert [(len(s.text.split()), s.reason) for s in spans] == [(11, "length")]


def test_resume_rebuilds_the_held_text_after_a_takeover() -> None:
    texts = ["Good morning. We", "are going to", "talk about the budget, and", "then", "vote.", "Thanks"]
    whole = ClauseSegmenter()
    spans = feed(whole, texts) + whole.flush()
    # the first owner published spans up to the one ending in piece 3, then died
    first = ClauseSegmenter()
    published = feed(first, texts[:3])
    assert published and first.held_text
    last = published[-1]
    second = ClauseSegmenter()
    second.resume_from(last.resume_seq, last.resume_offset)
    replay = [piece(seq, texts[seq - 1]) for seq in range(1, len(texts) + 1)]  # re-fed from the stream
    rest: list[Span] = []
    for i, p in enumerate(replay):
        rest += second.push(p, now=float(i))
    rest += second.flush()
    assert [s.text for s in published + rest] == [s.text for s in spans]
    assert [(s.first_seq, s.last_seq) for s in published + rest] == [(s.first_seq, s.last_seq) for s in spans]


def test_a_redelivered_piece_is_ignored() -> None:
    seg = ClauseSegmenter()
    seg.push(piece(1, "We will"), now=0.0)
    assert seg.push(piece(1, "We will"), now=0.1) == []
    spans = seg.push(piece(2, "go."), now=0.2)
    assert [s.text for s in spans] == ["We will go."]
    assert seg.push(piece(2, "go."), now=0.3) == [] and seg.held_text == ""


def test_held_text_waits_for_a_boundary_only_while_the_listener_is_busy() -> None:
    seg = ClauseSegmenter(hold_timeout_s=1.5, idle_hold_s=0.5)
    # The start of a session: the listener hears nothing, so held text waits only 0.5 s.
    assert seg.push(piece(0, "Printing in the only"), now=102.0) == []
    assert seg.hold_deadline == 102.5
    assert seg.poll(102.4) == []
    first = seg.poll(102.5)
    assert [s.text for s in first] == ["Printing in the only"]
    # That span (1 s of speech, about 1.25 s to say translated) is heard until 103.75: text
    # held meanwhile may wait for a boundary until the listener is done, never less than the
    # idle hold ...
    assert seg.push(piece(1, "sense with which"), now=102.8) == []
    assert seg.hold_deadline == pytest.approx(102.5 + 1.25)
    assert seg.poll(103.7) == []
    assert [s.text for s in seg.poll(103.75)] == ["sense with which"]
    # ... and never more than the timeout, however long the listener is busy.
    assert [s.reason for s in seg.push(piece(2, "we are at present concerned, differs "
                                                "from most if not all the arts and crafts "
                                                "represented in the exhibition."), now=103.8)]
    assert seg.push(piece(3, "For although the"), now=103.9) == []
    assert seg.hold_deadline == pytest.approx(103.9 + 1.5)
    # Without an idle hold the timeout always applies, as before.
    plain = ClauseSegmenter(hold_timeout_s=1.5)
    plain.push(piece(0, "Printing in the only"), now=102.0)
    assert plain.hold_deadline == 103.5
