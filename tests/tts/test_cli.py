"""`s2st bench tts` end to end on the fast backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.cli import build_parser, main


def test_bench_tts_is_registered() -> None:
    args = build_parser().parse_args(["bench", "tts", "--cases", "espeak:es", "--repeat", "1"])
    assert callable(args.func) and args.cases == "espeak:es"


def test_bench_tts_writes_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tts.json"
    code = main(
        ["bench", "tts", "--cases", "espeak:es,espeak:en", "--repeat", "2", "--json", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert [(r["backend"], r["lang"]) for r in report["results"]] == [
        ("espeak", "es"),
        ("espeak", "en"),
    ]
    for row in report["results"]:
        assert row["error"] is None
        assert 0 < row["ttfa_s_median"] < 2.0 and 0 < row["stream_rtf_median"] < 1.0
        assert row["pieces"] >= 2 and row["audio_s"] > 2.0 and row["peak_rss_mb"] > 10
        assert row["first_piece_words"] <= 4 and len(row["ttfa_s_runs"]) == 2
    assert "espeak" in capsys.readouterr().out


def test_bench_tts_reports_a_bad_case() -> None:
    with pytest.raises(ValueError, match="BACKEND:LANG"):
        main(["bench", "tts", "--cases", "espeak", "--repeat", "1"])
