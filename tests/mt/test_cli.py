"""`s2st bench mt` on the development set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ops.cli import main
from tests.timing import met_in_one_run
from workers.mt.bench import percentile
from workers.mt.corpus import split_sentences


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 95) == 95.0
    assert percentile([3.0], 95) == 3.0


def test_split_sentences() -> None:
    assert split_sentences("Mr. Smith came. He left! Did he? Yes") == [
        "Mr. Smith came. He left! Did he?", "Yes",
    ]


def test_bench_mt_reports_latency_throughput_and_quality(
    tmp_path: Path, speech_dir: Path, capsys
) -> None:
    out = tmp_path / "mt.json"

    def bench() -> dict[tuple[str, str], dict[str, Any]]:
        code = main([
            "bench", "mt", "--pairs", "en-es,fr-en,en-de", "--max-segments", "30",
            "--fork-baseline", "3", "--stream-holds", "none,3", "--data", str(speech_dir),
            "--json", str(out),
        ])
        assert code == 0
        data = json.loads(out.read_text())
        results = {(r["backend"], r["pair"]): r for r in data["results"]}
        en_es = results[("apertium", "en-es")]
        assert en_es["segments"] == 30 and en_es["route"] == "apertium:en-es"
        assert en_es["bleu"] > 10 and en_es["chrf"] > 40 and en_es["scored_sentences"] == 5
        assert results[("apertium", "fr-en")]["route"] == "apertium:fr-es>apertium:es-en"
        fork = results[("apertium-fork", "eng-spa")]
        assert fork["segments"] == 3 and fork["p50_ms"] > en_es["p50_ms"]
        assert any("en-de" in s for s in data["skipped"])
        unheld, held = data["streaming"]
        assert unheld["hold_timeout_s"] is None and unheld["mean_delay_s"] == 0
        assert held["hold_timeout_s"] == 3.0 and \
            0 < held["mean_delay_s"] <= held["p95_delay_s"] <= 3.2
        assert held["pieces"] == unheld["pieces"] > 100 and held["chrf"] > unheld["chrf"]
        return results

    def speeds(results: dict[tuple[str, str], dict[str, Any]]) -> dict[str, float]:
        warm, fork = results[("apertium", "en-es")], results[("apertium-fork", "eng-spa")]
        return {k: warm[k] for k in ("p95_ms", "segments_per_s")} | {
            f"fork_{k}": fork[k] for k in ("p50_ms", "segments_per_s")}

    # How fast a warm translator is here is the bench's figure (the target: p95 under 50 ms;
    # about 3 ms measured here), and a busy host slows it down. What this asserts is what the
    # warm pipeline is for, against the bench's own baseline of the same run, a pipeline
    # forked per segment (about 190 ms): its p95 at least 4 times shorter than that one's
    # p50, its throughput at least 4 times that one's; met in one of up to three runs
    met_in_one_run(lambda: speeds(bench()),
                   lambda x: 4 * x["p95_ms"] < x["fork_p50_ms"]
                   and x["segments_per_s"] > 4 * x["fork_segments_per_s"],
                   "warm against forked translation speed")
    printed = capsys.readouterr().out
    assert "p95 ms" in printed and "apertium:en-es" in printed
