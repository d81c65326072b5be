"""MT with context: casing across pieces, glossaries (through Redis), numbers and dates, on the
real Apertium and the development set's sentences."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from bus.keys import Keys
from workers.mt import glossary
from workers.mt.backends.apertium import ApertiumTranslator
from workers.mt.casing import fit_span, lower_spurious_capitals
from workers.mt.corpus import load_sentences, simulate_commits
from workers.mt.engine import EngineConfig, SessionEngine, TranscriptIn
from workers.mt.protect import localize_number, protect, reorder_dates, restore
from workers.mt.router import Router

LOCAL_URL = "redis://127.0.0.1:6379/0"
GLOSSARY = {"earnings call": "conferencia de resultados", "Kubernetes": "Kubernetes"}


def piece(seq: int, text: str, utterance: str = "1", final: bool = False) -> TranscriptIn:
    return TranscriptIn(seq=seq, kind="committed", utterance=utterance, text=text, lang="en",
                        sample_start=seq * 16000, sample_end=(seq + 1) * 16000,
                        capture_start=float(seq), capture_end=float(seq + 1), final=final)


def engine(router: Router, targets: list[str] | None = None, hold: float = 0.5) -> SessionEngine:
    return SessionEngine(router, targets or ["es"], EngineConfig(hold_timeout_s=hold, idle_hold_s=hold,
                                                                 captions="off"))


# --- casing and sentence boundaries ------------------------------------------------------------


def test_apertium_capital_after_an_interjection_is_lowered(apertium: ApertiumTranslator) -> None:
    # the demo's last line: Apertium's eng-spa rules capitalise "Para" mid-sentence
    assert apertium.translate("Thank you very much for coming.", "en", "es") == \
        "Muchas gracias para venidero."
    # names keep their capital, translated or not
    assert apertium.translate("Yesterday London and John were in Spain.", "en", "es") == \
        "Ayer Londres y John eran en España."
    assert apertium.translate("The price is 1,500 dollars, or more.", "en", "es") == \
        "El precio es 1,500 dólares, o más."  # no space before the comma


def test_english_capitals_are_kept_into_english(apertium: ApertiumTranslator) -> None:
    out = apertium.translate("El lunes fui a Londres. Yo hablo inglés.", "es", "en")
    assert "Monday" in out and "London" in out and "I speak English" in out


def test_pieces_of_one_sentence_are_cased_as_one_sentence(router: Router) -> None:
    """A sentence cut by the hold timeout: the second span continues it (no capital, no period
    in the middle); the next sentence starts with a capital even when its source does not."""
    mt = engine(router)
    outs = mt.on_committed(piece(0, "Thank you very much"), 0.0) + mt.tick(1.0)
    outs += mt.on_committed(piece(1, "for coming."), 1.5)
    outs += mt.on_committed(piece(2, "and now the news."), 2.0)
    texts = [o.text for o in outs]
    assert texts == ["Muchas gracias", "para venidero.", "Y ahora el noticioso."], texts


def test_fit_span_rules() -> None:
    assert fit_span("for coming", "Para venidero.", False, "es") == "para venidero"
    assert fit_span("the end.", "el fin", True, "es") == "El fin."
    assert fit_span("NASA said", "NASA dijo", False, "es") == "NASA dijo"
    assert fit_span("John said", "John dijo", False, "es") == "John dijo"  # a name
    assert fit_span("is it?", "es él", False, "es") == "es él?"
    assert fit_span("he came", "He came.", False, "en") == "he came"
    assert fit_span("I came", "Vine.", False, "es") == "Vine"  # the source has a capital: kept
    assert fit_span("25 people came.", "25 personas vinieron", True, "es") == \
        "25 personas vinieron."
    assert fit_span("iphones are here.", "iPhones están aquí.", True, "es") == "iPhones están aquí."
    assert lower_spurious_capitals("Gracias Para venidero. Y Luego", {"Luego"}) == \
        "Gracias para venidero. Y Luego"


def test_piecewise_dev_set_has_no_capital_mid_sentence(router: Router, speech_dir: Any) -> None:
    """The dev set's English sentences as 4-word ASR pieces, each translated as it comes:
    a capital only where the sentence starts (or on a name of the source)."""
    clips = [s for s in load_sentences(speech_dir) if s.lang == "en" and "es" in s.references]
    assert len(clips) >= 5
    mt = engine(router, hold=0.0)
    outs = []
    for event in simulate_commits(clips, 4):
        outs += mt.on_committed(event, event.capture_end) + mt.tick(event.capture_end + 1)
    outs += mt.end()
    names = {w.strip(",.()") for c in clips for w in c.text.split()[1:] if w[:1].isupper()}
    starts = 0
    for out in outs:
        first = out.text.split()[0].strip("¿¡(\"")
        if first[:1].isupper():
            starts += 1
            assert out.source_text[:1].isupper(), (out.source_text, out.text)
        assert not out.text.endswith(".") or out.source_text.endswith("."), out.text
    assert starts >= len(clips)
    words = " ".join(o.text for o in outs).split()
    for previous, word in itertools.pairwise(words):
        bare = word.strip(",.()¿¡\"")
        if bare[:1].isupper():
            assert previous.endswith((".", "?", "!")) or bare in names or bare.isupper(), \
                (previous, word)


# --- numbers and dates -----------------------------------------------------------------------------


def test_numbers_and_dates_through_apertium(router: Router) -> None:
    mt = engine(router, ["es", "ca"])
    outs = mt.on_committed(piece(0, "About 1,500 people, or 3.5 percent, came on March 3rd, 2026 "
                                    "and 2,000,000.25 euros were paid in 25 to 30 years.",
                                 final=True), 0.0)
    es = next(o.text for o in outs if o.lang == "es")
    ca = next(o.text for o in outs if o.lang == "ca")
    for text in (es, ca):
        assert "1.500" in text and "3,5" in text and "2.000.000,25" in text
        assert "2026" in text and "25" in text and "30" in text
    assert "3 de marzo de 2026" in es
    assert "3 de" in ca and "de 2026" in ca  # eng-cat's own month name is "marzo" here


def test_numbers_from_spanish_into_english(router: Router) -> None:
    mt = SessionEngine(router, ["en"], EngineConfig(captions="off"))
    event = TranscriptIn(seq=0, kind="committed", utterance="1", lang="es", sample_start=0,
                         sample_end=16000, capture_start=0.0, capture_end=1.0, final=True,
                         text="Vinieron 1.500 personas, el 3,5 por ciento, en 2026.")
    [out] = mt.on_committed(event, 0.0)
    assert "1,500" in out.text and "3.5" in out.text and "2026" in out.text


def test_number_forms() -> None:
    assert localize_number("1,500", "en", "es") == "1.500"
    assert localize_number("3.5", "en", "es") == "3,5"
    assert localize_number("1.234.567,89", "es", "en") == "1,234,567.89"
    assert localize_number("3,5", "es", "ca") == "3,5"
    assert reorder_dates("on March 3rd, 2026 and the 5th of May") == "on 3 March 2026 and 5 May"
    assert reorder_dates("Dec. 24") == "24 December"
    guarded = protect("version 2.0.1 at 10:30, 1,2,3 and 25", "en", "es")
    assert guarded.slots == {}  # not numbers with separators: left alone
    guarded = protect("it is 3.5", "en", "es")
    assert restore(guarded.text.replace("904000", "x"), guarded) is None


# --- glossary --------------------------------------------------------------------------------------


def test_glossary_terms_come_out_fixed(router: Router, speech_dir: Any) -> None:
    terms = {**GLOSSARY, "cabbage juice": "jugo de repollo", "protocol": "protocolo sanitario"}
    mt = engine(router)
    mt.set_glossary({"es": terms})
    outs = mt.on_committed(piece(0, "kubernetes runs the Earnings  Call for us.", final=True), 0.0)
    assert outs[0].text == "Kubernetes corre el conferencia de resultados para nosotros."
    clips = {s.clip: s for s in load_sentences(speech_dir)}
    for seq, (clip, term) in enumerate((("fleurs_en_1728", "jugo de repollo"),
                                         ("fleurs_en_1938", "protocolo sanitario")), start=10):
        outs = mt.on_committed(piece(seq, clips[clip].text, utterance=clip, final=True), 0.0)
        assert term in " ".join(o.text for o in outs)
    # a term keeps its own case mid-sentence, and at a sentence start when mixed-case
    mt.set_glossary({"es": {"kubernetes": "Kubernetes", "iphone": "iPhone"}})
    outs = mt.on_committed(piece(20, "Then the"), 0.0) + mt.tick(5.0)
    outs += mt.on_committed(piece(21, "kubernetes cluster failed."), 6.0)
    outs += mt.on_committed(piece(22, "iphone users know it.", final=True), 7.0)
    assert [o.text.split()[0] for o in outs] == ["Entonces", "Kubernetes", "iPhone"], outs
    mt.set_glossary({})  # without it, Apertium's own words
    outs = mt.on_committed(piece(100, "The earnings call.", final=True), 0.0)
    assert outs[0].text == "La llamada de ingresos."


@pytest.mark.parametrize("spec, message", [
    ("", "empty glossary entry"),
    ("   ", "empty glossary entry"),
    ("=conferencia", "the term is empty"),
    ("earnings call=", "the translation is empty"),
    ("a=b=c", "more than one '='"),
    ("bad\tterm=x", "control character"),
    ("...=x", "no letter or digit"),
    ("word " * 20, "over 12 words"),
])
def test_bad_glossary_entries_are_refused(spec: str, message: str) -> None:
    with pytest.raises(glossary.GlossaryError, match=message):
        glossary.parse_entry(spec)


def test_glossary_entry_forms() -> None:
    assert glossary.parse_entry("Kubernetes") == ("Kubernetes", "Kubernetes")
    assert glossary.parse_entry(" earnings  call = conferencia de resultados ") == \
        ("earnings call", "conferencia de resultados")


@pytest.fixture
async def client(local_redis: str) -> Any:
    r = aioredis.Redis.from_url(LOCAL_URL)
    keys = Keys("tgl" + uuid.uuid4().hex[:10])
    yield r, keys
    found = [k async for k in r.scan_iter(match=f"{keys.prefix}:*")]
    if found:
        await r.delete(*found)
    await r.aclose()


async def test_glossary_round_trip_through_redis(client: Any, router: Router) -> None:
    r, keys = client
    assert glossary.glossary_key(keys, "conf1", "es") == f"{keys.prefix}:{{conf1}}:mt:glossary:es"
    await glossary.set_terms(r, keys, "conf1", "es", ["earnings call=conferencia de resultados",
                                                      "Kubernetes"])
    assert await glossary.list_terms(r, keys, "conf1", "es") == GLOSSARY
    with pytest.raises(glossary.GlossaryError):
        await glossary.set_terms(r, keys, "conf1", "es", ["ok=bien", "=x"])
    assert "ok" not in await glossary.list_terms(r, keys, "conf1", "es")  # nothing written
    # a hand-written bad entry is skipped, not fatal
    await r.hset(glossary.glossary_key(keys, "conf1", "es"), "  ", "x")

    cache = glossary.GlossaryCache(refresh_s=2.0)
    found = await cache.get(r, keys, "conf1", ["es", "ca"], now=0.0)
    assert found == {"es": GLOSSARY}
    mt = engine(router)
    mt.set_glossary(found)
    [out] = mt.on_committed(piece(0, "The earnings call on Kubernetes.", final=True), 0.0)
    assert "conferencia de resultados" in out.text and "Kubernetes" in out.text

    assert await glossary.remove_terms(r, keys, "conf1", "es", ["EARNINGS CALL"]) == 1
    assert await cache.get(r, keys, "conf1", ["es", "ca"], now=1.0) is found  # cached
    refreshed = await cache.get(r, keys, "conf1", ["es", "ca"], now=2.5)
    assert refreshed == {"es": {"Kubernetes": "Kubernetes"}}
    await glossary.set_terms(r, keys, "conf1", "es", ["kubernetes=K8s"])  # one spelling per term
    assert await glossary.list_terms(r, keys, "conf1", "es") == {"kubernetes": "K8s"}


def test_s2st_room_glossary_command(client: Any) -> None:
    """The operator's command: set, list, remove; a bad entry is one line and exit status 2,
    and nothing of that call is written."""
    import os
    import subprocess
    import sys

    _r, keys = client

    def s2st(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops.cli", "room", "glossary", "conf1", "es", *args,
             "--redis-url", LOCAL_URL, "--key-prefix", keys.prefix],
            capture_output=True, text=True, env=dict(os.environ), timeout=60)

    out = s2st("--set", "earnings call=conferencia de resultados", "--set", "Kubernetes")
    assert out.returncode == 0, out.stderr
    assert "2 set" in out.stdout and f"{keys.prefix}:{{conf1}}:mt:glossary:es" in out.stdout
    assert s2st("--list").stdout.splitlines() == ["Kubernetes=Kubernetes",
                                                  "earnings call=conferencia de resultados"]
    bad = s2st("--set", "ok=bien", "--set", "earnings call=")
    assert bad.returncode == 2 and "Traceback" not in bad.stdout + bad.stderr
    assert bad.stdout.strip() == ("s2st room glossary: glossary entry 'earnings call=': the "
                                  "translation is empty")
    out = s2st("--remove", "kubernetes")
    assert out.returncode == 0 and "1 removed" in out.stdout
    assert s2st().stdout.splitlines() == ["earnings call=conferencia de resultados"]
    assert s2st("--remove", "  ").returncode == 2
