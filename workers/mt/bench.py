"""``s2st bench mt``: milliseconds per segment and segments per second, per backend and pair,
plus BLEU/chrF where the development set has reference translations."""

from __future__ import annotations

import math
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .corpus import Sentence, simulate_commits, split_sentences
from .engine import EngineConfig, SessionEngine, TranslationOut
from .router import Router


@dataclass
class PairResult:
    backend: str
    pair: str
    route: str
    segments: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    segments_per_s: float
    bleu: float | None = None
    chrf: float | None = None
    scored_sentences: int = 0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def time_calls(translate: Callable[[str], str], segments: Sequence[str]) -> tuple[list[float], float]:
    """Per-call milliseconds and the total wall time in seconds."""
    times: list[float] = []
    start = time.perf_counter()
    for text in segments:
        t0 = time.perf_counter()
        translate(text)
        times.append((time.perf_counter() - t0) * 1000)
    return times, time.perf_counter() - start


def score(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, float]:
    """Corpus BLEU and chrF (sacrebleu defaults)."""
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score
    chrf = sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score
    return round(bleu, 2), round(chrf, 2)


def bench_pair(
    router: Router,
    backend_name: str,
    src: str,
    tgt: str,
    corpus: Sequence[Sentence],
    max_segments: int,
) -> PairResult:
    sources = [s for s in corpus if s.lang == src]
    segments = [seg for s in sources for seg in split_sentences(s.text)][:max_segments]
    if not segments:
        raise ValueError(f"no {src} transcripts in the development set")
    route = router.route(src, tgt)
    router.translate(segments[0], src, tgt)  # warm up: start the pipeline or load the model
    # through the engine's text path, as the worker translates a span: numbers and glossary
    # protected, casing for the span's place (each segment here starts a sentence)
    engine = SessionEngine(router, [tgt], EngineConfig(captions="off"))

    def translate(text: str) -> str:
        return engine.translate_text(text, src, tgt).text

    times, total = time_calls(translate, segments)
    result = PairResult(
        backend=backend_name, pair=f"{src}-{tgt}", route=str(route), segments=len(times),
        p50_ms=round(percentile(times, 50), 2), p95_ms=round(percentile(times, 95), 2),
        mean_ms=round(statistics.fmean(times), 2), segments_per_s=round(len(times) / total, 1),
    )
    scored = [s for s in sources if tgt in s.references]
    if scored:
        hyps = [translate(s.text) for s in scored]
        result.bleu, result.chrf = score(hyps, [s.references[tgt] for s in scored])
        result.scored_sentences = len(scored)
    return result


def bench_fork(mode: str, segments: Sequence[str]) -> PairResult:
    """The baseline: one ``apertium`` process per segment."""

    def fork(text: str) -> str:
        return subprocess.run(
            ["apertium", "-u", mode], input=text, capture_output=True, text=True, check=True, timeout=30
        ).stdout

    times, total = time_calls(fork, segments)
    return PairResult(
        backend="apertium-fork", pair=mode, route=f"apertium {mode} (a process per call)",
        segments=len(times), p50_ms=round(percentile(times, 50), 2),
        p95_ms=round(percentile(times, 95), 2), mean_ms=round(statistics.fmean(times), 2),
        segments_per_s=round(len(times) / total, 1),
    )


def report(results: Sequence[PairResult]) -> str:
    lines = [
        f"{'backend':<14} {'pair':<8} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'seg/s':>8} "
        f"{'BLEU':>6} {'chrF':>6}  route"
    ]
    for r in results:
        bleu = f"{r.bleu:6.1f}" if r.bleu is not None else f"{'-':>6}"
        chrf = f"{r.chrf:6.1f}" if r.chrf is not None else f"{'-':>6}"
        lines.append(
            f"{r.backend:<14} {r.pair:<8} {r.segments:>4} {r.p50_ms:>8.2f} {r.p95_ms:>8.2f} "
            f"{r.segments_per_s:>8.1f} {bleu} {chrf}  {r.route}"
        )
    return "\n".join(lines)


def as_json(results: Sequence[PairResult], meta: dict[str, Any]) -> dict[str, Any]:
    return {**meta, "results": [asdict(r) for r in results]}


@dataclass
class StreamingResult:
    """What holding for clause boundaries costs (delay) and buys (quality)."""

    pair: str
    words_per_piece: int
    hold_timeout_s: float | None  # None: no holding, every piece translated as it arrives
    pieces: int
    mean_delay_s: float
    p95_delay_s: float
    bleu: float | None = None
    chrf: float | None = None


def _stream(
    router: Router, events: Sequence[Any], tgt: str, hold_timeout_s: float | None, tick_s: float
) -> tuple[list[TranslationOut], dict[int, float]]:
    """Run one session in simulated time; returns its outputs and, per source seq, how long
    after the piece arrived its text was released for translation."""
    config = EngineConfig(hold_timeout_s=hold_timeout_s if hold_timeout_s is not None else 0.0,
                          captions="off")
    engine = SessionEngine(router, [tgt], config)
    arrival = {e.seq: e.capture_end for e in events}
    delays: dict[int, float] = {}

    def record(outs: list[TranslationOut], now: float) -> None:
        for out in outs:
            for seq in range(out.src_seq_first, out.src_seq + 1):
                done = seq < out.src_seq or out.resume_seq > seq
                if done and seq not in delays:
                    delays[seq] = now - arrival[seq]

    outputs: list[TranslationOut] = []
    now = events[0].capture_end if events else 0.0
    for event in events:
        while hold_timeout_s is not None and now + tick_s < event.capture_end:
            now += tick_s
            outs = engine.tick(now)
            record(outs, now)
            outputs += outs
        now = event.capture_end
        outs = engine.on_committed(event, now)
        if hold_timeout_s is None:
            outs += engine.tick(now)
        record(outs, now)
        outputs += outs
    while engine.segmenter.held_text:
        now += tick_s
        outs = engine.tick(now)
        record(outs, now)
        outputs += outs
    return outputs, delays


def bench_streaming(
    router: Router,
    corpus: Sequence[Sentence],
    src: str,
    tgt: str,
    words_per_piece: int,
    hold_timeout_s: float | None,
    tick_s: float = 0.1,
) -> StreamingResult:
    """Added delay over every ``src`` clip; BLEU/chrF over the clips with ``tgt`` references."""
    clips = [s for s in corpus if s.lang == src]
    _, delays = _stream(router, simulate_commits(clips, words_per_piece), tgt, hold_timeout_s, tick_s)
    values = list(delays.values())
    result = StreamingResult(
        pair=f"{src}-{tgt}", words_per_piece=words_per_piece, hold_timeout_s=hold_timeout_s,
        pieces=len(values), mean_delay_s=round(statistics.fmean(values), 3),
        p95_delay_s=round(percentile(values, 95), 3),
    )
    scored = [s for s in clips if tgt in s.references]
    if scored:
        hyps = []
        for clip in scored:
            outs, _ = _stream(router, simulate_commits([clip], words_per_piece), tgt, hold_timeout_s, tick_s)
            hyps.append(" ".join(o.text for o in outs))
        result.bleu, result.chrf = score(hyps, [s.references[tgt] for s in scored])
    return result


def streaming_report(results: Sequence[StreamingResult]) -> str:
    lines = [f"{'pair':<8} {'words':>5} {'hold s':>6} {'pieces':>6} {'mean delay s':>12} "
             f"{'p95 delay s':>11} {'BLEU':>6} {'chrF':>6}"]
    for r in results:
        hold = "none" if r.hold_timeout_s is None else f"{r.hold_timeout_s:.1f}"
        bleu = f"{r.bleu:6.1f}" if r.bleu is not None else f"{'-':>6}"
        chrf = f"{r.chrf:6.1f}" if r.chrf is not None else f"{'-':>6}"
        lines.append(f"{r.pair:<8} {r.words_per_piece:>5} {hold:>6} {r.pieces:>6} "
                     f"{r.mean_delay_s:>12.3f} {r.p95_delay_s:>11.3f} {bleu} {chrf}")
    return "\n".join(lines)
