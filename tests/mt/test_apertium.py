"""The warm Apertium backend: formatting, latency, unknown words, restarts and timeouts."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.timing import met_in_one_run
from workers.mt.backends.apertium import ApertiumPipeline, ApertiumTranslator, discover_modes
from workers.mt.backends.apertium_format import deformat, match_initial_case, reformat
from workers.mt.errors import BackendFailure, BackendUnavailable, InputRejected


def test_deformat_escapes_the_stream_format_and_joins_lines() -> None:
    assert deformat("  a [b]\n c^d $e /f @g <h> {i} \\j ~k ") == (
        "a \\[b\\] c\\^d \\$e \\/f \\@g \\<h\\> \\{i\\} \\\\j k"
    )


def test_deformat_removes_control_characters_such_as_the_protocols_nul() -> None:
    assert deformat("The dog\x00 is\x07 black") == "The dog is black"


def test_a_nul_in_the_text_does_not_desynchronise_the_pipeline(apertium: ApertiumTranslator) -> None:
    assert apertium.translate("The dog\x00The house", "en", "es") == "El perro la casa"  # a capital mid-sentence is lowered
    assert apertium.translate("The cat", "en", "es") == "El gato"


def test_reformat_strips_unknown_marks_and_superblanks() -> None:
    result = reformat(" Estoy yendo a la #canal, [*Xyzzy] \\@home @foo 3*4[]")
    assert result.text == "Estoy yendo a la canal, Xyzzy @home foo 3*4"
    assert result.unknown_words == ("canal", "Xyzzy", "foo")


def test_initial_case_follows_the_source() -> None:
    assert match_initial_case("and then we go", "Y entonces vamos") == "y entonces vamos"
    assert match_initial_case("Because it is late", "perquè és tard") == "Perquè és tard"
    assert match_initial_case("nasa said", "NASA dijo") == "NASA dijo"
    assert match_initial_case("¿qué?", "¿What?") == "¿what?"
    assert match_initial_case("123", "123") == "123"


def test_a_span_continuing_a_sentence_starts_in_lower_case(apertium: ApertiumTranslator) -> None:
    assert apertium.translate("and then we go home.", "en", "es").startswith("y ")
    assert apertium.translate("y luego vamos", "es", "en").startswith("and ")
    assert apertium.translate("The dog", "en", "ca").startswith("El ")


def test_discovers_installed_plain_directions() -> None:
    modes = discover_modes()
    assert modes[("en", "es")] == "eng-spa"
    assert modes[("fr", "es")] == "fr-es"
    assert ("en", "ca") in modes and ("es", "pt") in modes
    assert all("_" not in mode for mode in modes.values())  # no regional variants by default


def test_translates_en_es_readably(apertium: ApertiumTranslator) -> None:
    out = apertium.translate("Good morning, everyone. The weather is nice today.", "en", "es")
    assert out.startswith("Buenos días"), out
    assert "tiempo" in out and out.endswith(".")
    assert not any(w[0] in "*#@" for w in out.split())


def test_unknown_words_are_kept_without_marks(apertium: ApertiumTranslator) -> None:
    before = apertium.unknown_words
    out = apertium.translate("Xyzzyplugh arrived at the station.", "en", "es")
    assert "Xyzzyplugh" in out and "*" not in out
    assert apertium.unknown_words > before


def test_reserved_characters_survive(apertium: ApertiumTranslator) -> None:
    out = apertium.translate("The price is $5 [about] <five> dollars / euros.", "en", "es")
    for part in ("$5", "[", "]", "<", ">", "/"):
        assert part in out, out


def test_warm_pipeline_is_fast_and_stays_the_same_process(apertium: ApertiumTranslator) -> None:
    apertium.translate("hello", "en", "es")
    pipeline = apertium._pipeline("eng-spa")[0]
    pid = pipeline.pid

    def p95_ms() -> float:
        times = []
        for i in range(20):
            t0 = time.perf_counter()
            apertium.translate(f"We will meet at the station at {i} o'clock.", "en", "es")
            times.append(time.perf_counter() - t0)
        assert pipeline.pid == pid
        return round(1000 * sorted(times)[18], 1)

    # p95 under 50 ms (about 1 ms measured here): no call waits for a timeout. A busy host can
    # keep the pipeline's processes off the CPU now and then: met in one of up to three rounds
    met_in_one_run(p95_ms, lambda ms: ms < 50, "p95 ms of 20 warm translations")


def test_consecutive_texts_do_not_bleed_into_each_other(apertium: ApertiumTranslator) -> None:
    first = apertium.translate("The dog is black", "en", "es")
    second = apertium.translate("The house is green", "en", "es")
    assert "perro" in first and "casa" not in first
    assert "casa" in second and "perro" not in second


def test_thousands_of_words_neither_block_nor_mix(apertium: ApertiumTranslator) -> None:
    long_text = " ".join(["The cat is on the table."] * 600)  # 3600 words, over a pipe buffer
    out = apertium.translate(long_text, "en", "es")
    assert out.count("gato") == 600
    assert apertium.translate("The dog", "en", "es") == "El perro"


def test_rejects_text_over_the_character_limit() -> None:
    translator = ApertiumTranslator(max_chars=100)
    with pytest.raises(InputRejected, match="over the limit"):
        translator.translate("word " * 50, "en", "es")
    translator.close()


def test_empty_text_gives_empty_translation(apertium: ApertiumTranslator) -> None:
    assert apertium.translate("   \n ", "en", "es") == ""


def test_unsupported_direction_is_a_clear_error(apertium: ApertiumTranslator) -> None:
    assert not apertium.supports("en", "de")
    with pytest.raises(BackendUnavailable, match="en-de"):
        apertium.translate("hello", "en", "de")


def test_killed_pipeline_is_restarted_and_the_text_retried() -> None:
    translator = ApertiumTranslator(timeout_s=20.0)
    assert translator.translate("The dog", "en", "es") == "El perro"
    pipeline = translator._pipeline("eng-spa")[0]
    old_pid = pipeline.pid
    assert old_pid is not None
    os.killpg(old_pid, signal.SIGKILL)
    time.sleep(0.1)
    assert translator.translate("The house", "en", "es") == "La casa"
    assert pipeline.restarts == 1 and pipeline.pid != old_pid
    translator.close()


def test_hung_pipeline_times_out_and_is_replaced() -> None:
    translator = ApertiumTranslator(timeout_s=0.5)
    pipeline, _ = translator._pipeline("eng-spa")
    pipeline._script = "cat > /dev/null"  # reads everything, never answers
    t0 = time.monotonic()
    with pytest.raises(BackendFailure, match="no answer"):
        translator.translate("The dog", "en", "es")
    assert time.monotonic() - t0 < 5
    assert pipeline.pid is None  # killed
    pipeline._script = None  # the real pipeline again
    translator.timeout_s = 20.0
    assert translator.translate("The dog", "en", "es") == "El perro"
    translator.close()


def test_pipeline_that_dies_at_once_fails_clearly() -> None:
    translator = ApertiumTranslator(timeout_s=5.0)
    pipeline, _ = translator._pipeline("eng-spa")
    pipeline._script = "read -r -d '' line; echo broken data >&2; exit 3"
    with pytest.raises(BackendFailure, match=r"died twice.*broken data"):
        translator.translate("The dog", "en", "es")
    assert pipeline.starts == 2
    translator.close()


def test_pipeline_reports_its_pid_and_stops() -> None:
    pipeline = ApertiumPipeline("eng-spa")
    assert pipeline.exchange("The dog", 20.0) == "El perro[]"  # raw stream format
    pid = pipeline.pid
    assert pid is not None
    pipeline.stop()
    assert pipeline.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_mode_file_is_unavailable(tmp_path) -> None:
    translator = ApertiumTranslator(datadir=tmp_path, modes={("en", "xx"): "eng-xxx"})
    with pytest.raises(BackendUnavailable, match="not found"):
        translator.translate("hello", "en", "xx")
