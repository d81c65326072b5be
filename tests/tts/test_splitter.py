"""Splitting real sentences into streamable pieces."""

from __future__ import annotations

from typing import Any

import pytest

from workers.tts.splitter import SplitPolicy, ends_sentence, split_text

CLIPS = ["fleurs_en_1904", "fleurs_en_1728", "fleurs_en_1938", "fleurs_en_1846"]


@pytest.mark.parametrize("clip", CLIPS)
def test_pieces_keep_every_word_in_order_and_respect_budgets(
    manifest: dict[str, dict[str, Any]], clip: str
) -> None:
    text = manifest[clip]["translation_es"]
    policy = SplitPolicy(first_words=4, max_words=12)
    pieces = split_text(text, policy)
    assert " ".join(pieces).split() == text.split()
    assert len(pieces) >= 2
    for index, piece in enumerate(pieces):
        assert 1 <= len(piece.split()) <= policy.budget(index)
    assert policy.min_first_words <= len(pieces[0].split()) <= 4 or len(pieces) == 1


def test_first_piece_is_cut_at_a_clause_or_before_a_function_word() -> None:
    pieces = split_text(
        "No obstante, debido a la lentitud de los canales de comunicación, los estilos "
        "occidentales podrían llevar un retraso de unos veinte años."
    )
    assert pieces[0] == "No obstante,"
    pieces = split_text("Muchas personas dicen que los dinosaurios tienen plumas y pueden volar.")
    assert pieces[0] == "Muchas personas dicen"  # cut before "que"


def test_pieces_grow_then_end_at_clause_boundaries(manifest: dict[str, dict[str, Any]]) -> None:
    text = manifest["ljspeech_LJ001-0001_to_0032_continuous"]["transcript"]
    pieces = split_text(text, SplitPolicy(first_words=4, max_words=24))
    assert len(pieces[0].split()) <= 4 and len(pieces[1].split()) <= 8
    assert max(len(p.split()) for p in pieces) <= 24
    boundary = sum(p.rstrip()[-1] in ",;:.!?" for p in pieces[:-1])
    assert boundary >= 0.7 * (len(pieces) - 1)  # mostly cut at punctuation


def test_short_text_is_one_piece() -> None:
    assert split_text("Hola.") == ["Hola."]
    assert split_text("  Buenos   días  ") == ["Buenos días"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_has_no_pieces(text: str) -> None:
    assert split_text(text) == []


def test_abbreviations_do_not_end_sentences() -> None:
    assert not ends_sentence("Sr.") and not ends_sentence("etc.") and not ends_sentence("J.")
    assert ends_sentence("volar.") and ends_sentence("¿qué?") and ends_sentence('"fin."')


def test_a_run_without_spaces_is_cut_into_bounded_tokens() -> None:
    pieces = split_text("x" * 500)
    assert all(len(token) <= 40 for piece in pieces for token in piece.split())
    assert "".join("".join(p.split()) for p in pieces) == "x" * 500


@pytest.mark.parametrize(
    "kwargs", [{"first_words": 0}, {"first_words": 30, "max_words": 10}, {"growth": 0.5}]
)
def test_bad_policy_is_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SplitPolicy(**kwargs)
