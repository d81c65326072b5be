"""`s2st bench tts`: time to first audio, real-time factor and memory per backend on this host."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import TtsConfig
from .engine import TtsEngine
from .splitter import SplitPolicy

# 15-word sentences, the length the time-to-first-audio target is stated for.
SENTENCES = {
    "es": "Buenos días a todos, gracias por venir a la reunión de hoy sobre el presupuesto.",
    "en": "Good morning everyone, thank you for coming to the meeting today about the yearly budget.",
    "fr": "Bonjour à tous, merci d'être venus à la réunion d'aujourd'hui sur le budget annuel.",
    "de": "Guten Morgen zusammen, danke, dass Sie heute zu unserer Sitzung über das Jahresbudget gekommen sind.",
}
DEFAULT_CASES = ("kokoro:es", "piper:en", "espeak:es", "espeak:en")
TTFA_TARGET_S = 0.300


@dataclass
class CaseResult:
    backend: str
    lang: str
    words: int
    load_s: float = 0.0
    rss_delta_mb: float = 0.0
    ttfa_s: list[float] = field(default_factory=list)  # time to first audio, streamed
    first_piece_words: int = 0
    stream_rtf: list[float] = field(default_factory=list)  # all pieces: synth time / audio time
    whole_rtf: list[float] = field(default_factory=list)  # one call for the whole sentence
    audio_s: float = 0.0
    pieces: int = 0
    peak_rss_mb: float = 0.0  # the whole process that ran this case alone
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        row = asdict(self)
        for key in ("ttfa_s", "stream_rtf", "whole_rtf"):
            values = row.pop(key)
            row[f"{key}_median"] = round(statistics.median(values), 4) if values else None
            row[f"{key}_runs"] = [round(v, 4) for v in values]
        return row


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_case(backend: str, lang: str, text: str, repeat: int, split: SplitPolicy) -> CaseResult:
    config = TtsConfig(backends={lang: (backend,)}, fallback="", split=split)
    engine = TtsEngine(config)
    result = CaseResult(backend=backend, lang=lang, words=len(text.split()))
    rss_before = _rss_mb()
    started = time.perf_counter()
    try:
        synth = engine.backend(backend)
        loader = getattr(synth, "load", None)
        if callable(loader):
            loader()
        synth.synthesize("ok", lang)  # warm: first-call costs are load time, not latency
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.load_s = time.perf_counter() - started
    result.rss_delta_mb = _rss_mb() - rss_before
    for _ in range(repeat):
        started = time.perf_counter()
        first: float | None = None
        audio = synth_total = 0.0
        pieces = 0
        for piece in engine.speak(text, lang):
            if first is None:
                first = time.perf_counter() - started
                result.first_piece_words = len(piece.text.split())
            if piece.backend != backend:
                result.error = f"piece {piece.part} was spoken by {piece.backend}"
            audio += piece.duration
            synth_total += piece.synth_s
            pieces += 1
        if first is None:
            result.error = "no audio"
            return result
        result.ttfa_s.append(first)
        result.stream_rtf.append(synth_total / audio)
        result.audio_s, result.pieces = audio, pieces
        started = time.perf_counter()
        whole = synth.synthesize(text, lang)
        result.whole_rtf.append((time.perf_counter() - started) / whole.duration)
    result.peak_rss_mb = _max_rss_mb()
    return result


def _run_case_isolated(
    backend: str, lang: str, text: str, repeat: int, split: SplitPolicy
) -> dict[str, Any]:
    return run_case(backend, lang, text, repeat, split).summary()


def run(cases: list[str], repeat: int, split: SplitPolicy, json_path: str | None) -> dict[str, Any]:
    import multiprocessing

    # A fresh process per case, so the memory figures belong to one backend alone.
    context = multiprocessing.get_context("spawn")
    results = []
    for case in cases:
        backend, _, lang = case.partition(":")
        if not lang:
            raise ValueError(f"bench case {case!r} must look like BACKEND:LANG, e.g. kokoro:es")
        text = SENTENCES.get(lang)
        if text is None:
            raise ValueError(f"no bench sentence for {lang!r} (have: {', '.join(SENTENCES)})")
        with context.Pool(1) as pool:
            results.append(pool.apply(_run_case_isolated, (backend, lang, text, repeat, split)))

    report = {
        "bench": "tts",
        "host": {
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "threads": os.environ.get("S2ST_TTS_THREADS", "default"),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "split": asdict(split),
        "repeat": repeat,
        "ttfa_target_s": TTFA_TARGET_S,
        "results": results,
    }
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"TTS benchmark, {report['host']['cpu_count']} CPUs (load average "
        f"{report['host']['load_average_1m']}), {report['repeat']} runs each, "
        f"first piece <= {report['split']['first_words']} words",
        f"{'backend':8} {'lang':4} {'load s':>7} {'+RSS MB':>8} {'TTFA ms':>8} {'1st words':>9} "
        f"{'RTF stream':>10} {'RTF whole':>9} {'audio s':>7} {'pieces':>6} {'peak MB':>7}",
    ]
    for row in report["results"]:
        if row["error"] and row["ttfa_s_median"] is None:
            lines.append(f"{row['backend']:8} {row['lang']:4} ERROR {row['error']}")
            continue
        lines.append(
            f"{row['backend']:8} {row['lang']:4} {row['load_s']:7.2f} {row['rss_delta_mb']:8.0f} "
            f"{row['ttfa_s_median'] * 1000:8.0f} {row['first_piece_words']:9d} "
            f"{row['stream_rtf_median']:10.3f} {row['whole_rtf_median']:9.3f} "
            f"{row['audio_s']:7.2f} {row['pieces']:6d} {row['peak_rss_mb']:7.0f}"
        )
    lines.append(
        "+RSS: resident memory added by loading the backend; peak: peak RSS of the process that "
        f"ran the case alone. TTFA target {report['ttfa_target_s'] * 1000:.0f} ms "
        "(default Spanish voice)."
    )
    return "\n".join(lines)
