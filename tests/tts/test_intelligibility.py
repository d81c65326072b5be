"""`s2st bench tts --intelligibility`: a real round trip (voices, Whisper base, scores) on a
few texts of the dev set, and a garbled voice that must score worse than a real one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.cli import build_parser
from ops.evaluation.manifest import load
from ops.evaluation.tts_intelligibility import REAL, Voice, format_report, reference_texts, run
from workers.tts.backends.base import Audio, SynthesisError
from workers.tts.backends.espeak import EspeakSynthesizer


class Garbled(EspeakSynthesizer):
    """espeak-ng speaking every word backwards: real speech, wrong words."""

    name = "garbled"

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        return super().synthesize(" ".join(w[::-1] for w in text.split()), lang, voice, speed)


class Broken(EspeakSynthesizer):
    name = "broken"

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: float = 1.0) -> Audio:
        raise SynthesisError("no voice here")


def test_voices_and_texts(speech_dir: Path) -> None:
    assert Voice.parse("kokoro:es:jf_alpha") == Voice("kokoro", "es", "jf_alpha")
    with pytest.raises(ValueError, match="BACKEND:LANG"):
        Voice.parse("kokoro")
    clips = load(speech_dir / "manifest.jsonl")
    texts = reference_texts(clips, "es")
    # the reference translations into Spanish first, then the Spanish clips' transcripts
    sources = [t.source for t in texts]
    assert sources == sorted(sources, reverse=True) and {"translation", "transcript"} <= {*sources}
    by_id = {c.id: c for c in clips}
    for t in texts:
        clip = by_id[t.id]
        assert t.text == (clip.translations["es"] if t.source == "translation"
                          else clip.transcript)
    assert len(reference_texts(clips, "es", limit=3)) == 3
    args = build_parser().parse_args(["bench", "tts", "--intelligibility", "--voices",
                                      "espeak:es", "--limit", "2"])
    assert args.intelligibility and args.voices == "espeak:es" and args.limit == 2


@pytest.mark.slow
def test_round_trip_scores(speech_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "intel.json"
    voices = [Voice.parse(v) for v in ("espeak:es", "kokoro:es", "garbled:es", "broken:es",
                                       "edge:es")]
    report = run(voices, manifest=speech_dir / "manifest.jsonl", limit=2, json_path=str(out),
                 backends={"garbled": Garbled(), "broken": Broken()})
    assert json.loads(out.read_text()) == report
    summary = {s["voice"]: s for s in report["summary"]}
    assert list(summary) == ["espeak:es", "kokoro:es", "garbled:es", "broken:es", "edge:es", REAL]
    assert "online-only" in summary["edge:es"]["skipped"]
    assert "no voice here" in summary["broken:es"]["skipped"]
    for name in ("espeak:es", "kokoro:es", "garbled:es", REAL):
        s = summary[name]
        assert s["skipped"] is None and s["n"] == 2 and s["words"] > 10 and s["errors"] == 0
        rows = [r for r in report["rows"] if r["voice"] == name]
        assert len(rows) == 2 and all(r["heard"] and r["audio_s"] > 1 for r in rows)
        assert (s["speakers"] == []) == (name == REAL)
    # real voices are understood; a voice saying the wrong words is not; real speech best
    for name in ("espeak:es", "kokoro:es"):
        assert summary[name]["wer"] < 60 < summary["garbled:es"]["wer"]
        assert summary[name]["bleu"] > summary["garbled:es"]["bleu"] + 15
        assert summary[name]["chrf"] > summary["garbled:es"]["chrf"] + 15
    assert summary["kokoro:es"]["wer"] < 30 and summary[REAL]["wer"] < 25
    text = format_report(report)
    assert "kokoro:es" in text and "skipped: online-only" in text and REAL in text
