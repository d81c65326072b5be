"""Prefix agreement and throttling of live caption translations."""

from __future__ import annotations

from workers.mt.captions import CaptionStabilizer, common_word_prefix


def test_common_word_prefix() -> None:
    assert common_word_prefix("el perro es negro", "el perro era negro") == "el perro"
    assert common_word_prefix("a b", "c") == ""
    assert common_word_prefix("el perro", "el perro es") == "el perro"


def scripted(answers: dict[str, str]) -> CaptionStabilizer:
    return CaptionStabilizer(lambda text: answers[text], min_interval_s=0.0)


def test_a_caption_is_shown_only_when_two_translations_agree() -> None:
    stab = scripted({
        "a": "el gato",
        "a b": "el perro negro",
        "a b c": "el perro negro come",
        "a b c d": "el perro negro come pan",
    })
    assert stab.offer("a", 0.0) is None  # nothing to agree with yet
    first = stab.offer("a b", 1.0)
    assert first is not None and first.text == "el"
    second = stab.offer("a b c", 2.0)
    assert second is not None and second.text == "el perro negro"
    third = stab.offer("a b c d", 3.0)
    assert third is not None and third.text == "el perro negro come"


def test_a_shrinking_agreement_does_not_take_words_back() -> None:
    stab = scripted({"1": "uno dos tres", "2": "uno dos tres cuatro", "3": "uno cinco"})
    stab.offer("1", 0.0)
    assert stab.offer("2", 1.0).text == "uno dos tres"  # type: ignore[union-attr]
    assert stab.offer("3", 2.0) is None
    assert stab.shown == "uno dos tres"


def test_throttle_keeps_only_the_newest_partial_for_the_next_tick() -> None:
    calls: list[str] = []

    def translate(text: str) -> str:
        calls.append(text)
        return text.upper()

    stab = CaptionStabilizer(translate, min_interval_s=1.0)
    stab.offer("x", 0.0)
    stab.offer("x y", 0.3)
    stab.offer("x y z", 0.6)
    assert calls == ["x"]
    assert stab.tick(0.9) is None and calls == ["x"]
    caption = stab.tick(1.0)
    assert calls == ["x", "x y z"]
    assert caption is not None and caption.text == "X"
    assert stab.tick(5.0) is None and len(calls) == 2  # nothing waiting


def test_reset_forgets_the_previous_translation() -> None:
    stab = scripted({"a": "uno", "b": "uno dos"})
    stab.offer("a", 0.0)
    stab.reset()
    assert stab.offer("b", 1.0) is None
    assert stab.shown == ""
