"""The per-session engine: one speaker, several listener languages, streaming and bad input."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest

from tests.mt.stream import committed_events, lj_rows
from workers.mt.backends.apertium import ApertiumTranslator
from workers.mt.engine import EngineConfig, SessionEngine, TranscriptIn, TranslationOut
from workers.mt.errors import InputRejected
from workers.mt.router import Router


def run(engine: SessionEngine, events: Sequence[TranscriptIn]) -> list[TranslationOut]:
    out: list[TranslationOut] = []
    for i, event in enumerate(events):
        out += engine.on_committed(event, now=i * 0.3)
        out += engine.tick(now=i * 0.3)
    return out + engine.end()


def test_room_with_spanish_and_catalan_listeners_gets_every_segment_in_order(
    router: Router, apertium: ApertiumTranslator, manifest: dict[str, dict[str, Any]]
) -> None:
    events = committed_events(lj_rows(manifest, 8))
    engine = SessionEngine(router, ["es", "ca"], session="room1/spk1")
    out = run(engine, events)

    assert out and all(o.kind == "committed" for o in out)
    es = [o for o in out if o.lang == "es"]
    ca = [o for o in out if o.lang == "ca"]
    assert len(es) == len(ca) == engine.stats["spans"]
    # both languages of a span come out together, Spanish then Catalan, spans in order
    assert [o.lang for o in out] == ["es", "ca"] * len(es)
    for a, b in zip(es, ca, strict=True):
        assert (a.src_seq_first, a.src_seq, a.source_text) == (b.src_seq_first, b.src_seq, b.source_text)
    # the spans cover every committed piece once, in order
    assert es[0].src_seq_first == 1 and es[-1].src_seq == events[-1].seq
    for prev, cur in itertools.pairwise(es):
        assert cur.src_seq_first in (prev.src_seq, prev.src_seq + 1)
        assert cur.capture_start >= prev.capture_end - 1e-6
        assert cur.sample_start >= prev.sample_end
    source = " ".join(e.text for e in events)
    assert " ".join(o.source_text for o in es).split() == source.split()
    # capture timestamps come from the source pieces
    assert es[0].capture_start == events[0].capture_start
    assert es[-1].capture_end == events[-1].capture_end
    # real translations, deterministic, with the route named
    for o in es[:5]:
        assert o.route == "apertium:en-es" and o.src_lang == "en"
        assert o.text == apertium.translate(o.source_text, "en", "es")
    assert ca[0].route == "apertium:en-ca" and ca[0].text != es[0].text
    assert engine.skipped == type(engine.skipped)()


def test_spans_end_at_sentence_or_clause_boundaries(router: Router, manifest: dict[str, dict[str, Any]]) -> None:
    events = committed_events(lj_rows(manifest, 6), words_per_piece=3)
    out = run(SessionEngine(router, ["es"], EngineConfig(hold_timeout_s=100)), events)
    for o in out:
        assert o.reason in ("boundary", "final"), o
        if o.reason == "boundary":
            assert o.source_text[-1] in ".?!;,:", o.source_text


def test_hold_timeout_translates_a_stalled_sentence(router: Router) -> None:
    engine = SessionEngine(router, ["es"], EngineConfig(hold_timeout_s=1.0))
    event = TranscriptIn(1, "committed", "u1", "The weather is nice and", "en", 0, 16000, 10.0, 11.0)
    assert engine.on_committed(event, now=0.0) == []
    assert engine.tick(now=0.5) == []
    out = engine.tick(now=1.0)
    assert [(o.source_text, o.reason, o.src_seq) for o in out] == [("The weather is nice and", "timeout", 1)]


def test_takeover_resumes_with_the_held_text(router: Router, manifest: dict[str, dict[str, Any]]) -> None:
    events = committed_events(lj_rows(manifest, 8), words_per_piece=5)
    whole = run(SessionEngine(router, ["es"], EngineConfig(hold_timeout_s=100)), events)

    # the first owner dies after a piece whose sentence ended inside it (text still held)
    first = SessionEngine(router, ["es"], EngineConfig(hold_timeout_s=100))
    published: list[TranslationOut] = []
    for i, event in enumerate(events):
        published += first.on_committed(event, now=float(i))
        if i >= len(events) // 3 and published and published[-1].resume_offset > 0:
            break
    else:
        pytest.fail("no piece in this text ends a sentence in its middle")
    assert first.segmenter.held_text
    last = published[-1]
    second = SessionEngine(router, ["es"], EngineConfig(hold_timeout_s=100))
    second.resume_from(last.resume_seq, last.resume_offset, context=[last.source_text])
    replay = [e for e in events if e.seq >= last.resume_seq]
    rest = run(second, replay)
    assert [(o.source_text, o.text) for o in published + rest] == [(o.source_text, o.text) for o in whole]


def test_bad_input_never_sticks_the_session(router: Router, caplog: pytest.LogCaptureFixture) -> None:
    engine = SessionEngine(router, ["es", "de"])  # no offline route to German
    empty = TranscriptIn(1, "committed", "u1", "   ", "en", 0, 10, 1.0, 1.1)
    assert engine.on_committed(empty, now=0.0) == []
    assert engine.stats["empty"] == 1
    huge = TranscriptIn(2, "committed", "u1", "word " * 5000, "en", 10, 20, 1.1, 1.2)
    with pytest.raises(InputRejected, match="5000 words"):
        engine.on_committed(huge, now=0.1)
    bad_lang = TranscriptIn(3, "committed", "u1", "hello.", "??", 20, 30, 1.2, 1.3)
    with pytest.raises(InputRejected, match="language"):
        engine.on_committed(bad_lang, now=0.2)
    good = TranscriptIn(4, "committed", "u1", "The dog is black.", "en", 30, 40, 1.3, 1.4, final=True)
    with caplog.at_level("WARNING"):
        out = engine.on_committed(good, now=0.3)
    assert [(o.lang, o.text) for o in out] == [("es", "El perro es negro.")]
    assert [(s.lang, s.src_seq) for s in engine.skipped] == [("de", 4)]
    assert "UnsupportedPair" in engine.skipped[0].error
    assert (engine.skipped[0].reason, engine.skipped[0].pair) == ("no_route", "en-de")
    assert any("skipped" in r.message for r in caplog.records)


def test_a_listener_of_the_speakers_language_gets_the_text_itself(router: Router) -> None:
    engine = SessionEngine(router, ["en", "es"])
    event = TranscriptIn(1, "committed", "u1", "Good  morning.", "en", 0, 10, 1.0, 1.1, final=True)
    out = engine.on_committed(event, now=0.0)
    assert [(o.lang, o.text, o.route) for o in out] == [
        ("en", "Good morning.", "passthrough"), ("es", "Buenos días.", "apertium:en-es"),
    ]


def test_whisper_translate_output_is_english_and_passes_through(router: Router) -> None:
    """A session whose ASR ran Whisper's translate task: its text is already English (lang
    en, source_lang fr); English listeners get it as it is, the others from the English."""
    fields = {
        "kind": "committed", "seq": "1", "utterance": "u1", "text": "Good  morning.",
        "lang": "en", "source_lang": "fr", "task": "translate", "sample_start": 0,
        "sample_end": 16000, "capture_start": 1.0, "capture_end": 2.0, "final": True,
    }
    engine = SessionEngine(router, ["en", "es"])
    out = engine.on_committed(TranscriptIn.from_event(fields), now=0.0)
    assert [(o.lang, o.src_lang, o.text, o.route) for o in out] == [
        ("en", "en", "Good morning.", "passthrough"),
        ("es", "en", "Buenos días.", "apertium:en-es"),
    ]


def test_context_of_previous_sentences_reaches_the_backend(router: Router) -> None:
    seen: list[tuple[str, ...]] = []

    class Recorder:
        name, fast = "rec", True

        def supports(self, src: str, tgt: str) -> bool:
            return True

        def translate(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> str:
            seen.append(tuple(context))
            return text.upper()

        def close(self) -> None:
            pass

    engine = SessionEngine(Router({"rec": Recorder()}, "*=rec"), ["xx"], EngineConfig(context_sentences=2))
    for i, text in enumerate(["One.", "Two.", "Three.", "Four."]):
        engine.on_committed(TranscriptIn(i, "committed", "u", text, "en", 0, 1, 0.0, 1.0), now=0.0)
    assert seen == [(), ("One.",), ("One.", "Two."), ("Two.", "Three.")]


def test_live_captions_agree_before_showing_and_are_never_committed(router: Router) -> None:
    engine = SessionEngine(router, ["es"], EngineConfig(caption_interval_s=0.5))
    partials = ["The weather", "The weather is nice", "The weather is nice today", "The weather is nice today and"]
    captions: list[TranslationOut] = []
    for i, text in enumerate(partials):
        event = TranscriptIn(i + 1, "partial", "u1", text, "en", 0, 16000 * (i + 1), 5.0, 5.0 + i)
        captions += engine.on_partial(event, now=i * 0.6)
    assert captions, "a fast backend shows captions by default"
    assert all(c.kind == "partial" and c.lang == "es" for c in captions)
    full = router.translate(partials[-1], "en", "es").text
    for c in captions:
        assert full.startswith(c.text), (c.text, full)
    assert len(captions[-1].text) >= len(captions[0].text)
    committed = engine.on_committed(
        TranscriptIn(5, "committed", "u1", "The weather is nice today.", "en", 0, 64000, 5.0, 9.0, final=True), now=3.0
    )
    assert [o.kind for o in committed] == ["committed"]


def test_captions_throttle_and_tick(router: Router) -> None:
    engine = SessionEngine(router, ["es"], EngineConfig(caption_interval_s=1.0))
    ev = lambda seq, text: TranscriptIn(seq, "partial", "u1", text, "en", 0, 1, 0.0, 1.0)  # noqa: E731
    engine.on_partial(ev(1, "The dog"), now=0.0)
    assert engine.on_partial(ev(2, "The dog is"), now=0.2) == []  # throttled: waits
    stabilizer = engine._targets["es"].captions["en"]
    assert stabilizer.translations == 1
    out = engine.tick(now=1.0)  # the waiting partial is translated now
    assert stabilizer.translations == 2
    assert [o.text for o in out] == ["El perro"]


def test_captions_off_for_slow_backends_by_default() -> None:
    class Slow:
        name, fast = "slow", False

        def supports(self, src: str, tgt: str) -> bool:
            return True

        def translate(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> str:
            raise AssertionError("a slow backend must not translate partials in auto mode")

        def close(self) -> None:
            pass

    engine = SessionEngine(Router({"slow": Slow()}, "*=slow"), ["es"])
    for i in range(3):
        assert engine.on_partial(TranscriptIn(i, "partial", "u", "hello there", "en", 0, 1, 0.0, 1.0), now=i) == []


def test_transcript_event_fields_are_checked() -> None:
    fields = {
        "kind": "committed", "seq": "7", "utterance": "u1", "text": "Hello.", "lang": "en",
        "sample_start": 0, "sample_end": 16000, "capture_start": 1.0, "capture_end": 2.0,
        "final": True, "words": [], "room": "r",
    }
    event = TranscriptIn.from_event(fields)
    assert (event.seq, event.final, event.kind) == (7, True, "committed")
    with pytest.raises(InputRejected, match="'lang'"):
        TranscriptIn.from_event({k: v for k, v in fields.items() if k != "lang"})
    with pytest.raises(InputRejected, match="kind"):
        TranscriptIn.from_event({**fields, "kind": "draft"})
    with pytest.raises(InputRejected, match="not str"):
        TranscriptIn.from_event({**fields, "text": 42})
    with pytest.raises(InputRejected, match="malformed"):
        TranscriptIn.from_event({**fields, "seq": "seven"})


def test_translation_out_fields(router: Router) -> None:
    engine = SessionEngine(router, ["es"])
    event = TranscriptIn(3, "committed", "u1", "The dog.", "en", 0, 16000, 1.0, 2.0, final=True)
    out = engine.on_committed(event, now=0.0)[0]
    assert out.src_seq == out.src_seq_first == 3
    assert (out.kind, out.lang, out.text, out.route) == (
        "committed", "es", "El perro.", "apertium:en-es",
    )
    assert (out.capture_start, out.capture_end) == (1.0, 2.0)


def test_a_backend_raising_anything_costs_only_its_own_target(apertium: ApertiumTranslator) -> None:
    class Broken:
        name, fast = "broken", True

        def supports(self, src: str, tgt: str) -> bool:
            return True

        def translate(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> str:
            raise RuntimeError("CUDA error: device-side assert triggered")

        def close(self) -> None:
            pass

    router = Router({"broken": Broken(), "apertium": apertium}, "en-ca=broken,*=apertium")
    engine = SessionEngine(router, ["es", "ca"])
    out = engine.on_committed(TranscriptIn(1, "committed", "u", "The dog sleeps.", "en", 0, 1, 0.0, 1.0), now=0.0)
    assert [(o.lang, o.text) for o in out] == [("es", apertium.translate("The dog sleeps.", "en", "es"))]
    assert [s.lang for s in engine.skipped] == ["ca"] and "CUDA error" in engine.skipped[0].error
    assert engine.skipped[0].reason == "error"
