"""Scores of an evaluation run: per clip, per target language and for the whole set."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ops.evaluation import quality
from ops.evaluation.latency import ClipLatency, OutputPiece, clip_latency, stats
from ops.evaluation.run import ClipRun
from ops.session_view import hop_parts

BACK_RATE = 16_000
GAP_S = 0.3  # silence between pieces in the audio transcribed back


@dataclass
class ClipScore:
    run: ClipRun
    latency: ClipLatency
    stages: dict[str, list[float]]  # stage/wait name -> seconds, one per segment
    back_transcript: str | None = None
    wer: float | None = None
    bleu: float | None = None
    chrf: float | None = None
    asr_bleu: float | None = None
    wer_counts: tuple[int, int] | None = None  # (edits, reference words)

    @property
    def hypothesis(self) -> str:
        return " ".join(self.run.transcripts)

    @property
    def translation(self) -> str:
        return " ".join(self.run.translations)


def output_pieces(run: ClipRun) -> list[OutputPiece]:
    t0 = run.t0
    return [OutputPiece(emitted=p.available - t0, duration=p.duration, text=p.text,
                        source_end=p.event.capture_end - t0, started=p.started - t0,
                        first=p.part == 0) for p in run.pieces]


def stage_times(run: ClipRun) -> dict[str, list[float]]:
    """Where each segment's latency went (its first piece): the hops of its trace, then the
    bus to the player and the wait there until it started to play. They add up to the
    segment latency."""
    out: dict[str, list[float]] = {}
    for p in run.pieces:
        if p.part != 0:
            continue
        parts = hop_parts(p.event)
        last = p.event.emitted or (p.event.trace[-1].t_out if p.event.trace else p.available)
        parts += [("written->player", p.available - last), ("player", p.started - p.available)]
        for name, value in parts:
            out.setdefault(name, []).append(value)
    return out


def speech_audio(run: ClipRun) -> np.ndarray:
    """The pieces played, in order, at 16 kHz float32, with a short silence between them."""
    from player_agent.outputs import resample_pcm

    gap = np.zeros(round(GAP_S * BACK_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    for p in run.pieces:
        pcm = resample_pcm(p.event.pcm, p.event.rate, BACK_RATE)
        parts += [np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, gap]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def score_clips(runs: Sequence[ClipRun],
                transcribe: Callable[[np.ndarray, str], str] | None) -> list[ClipScore]:
    scores = []
    for run in runs:
        clip = run.selected.clip
        reference = clip.translations.get(run.selected.target)
        s = ClipScore(run, clip_latency(output_pieces(run), run.source_s,
                                        len(reference.split()) if reference else None),
                      stage_times(run))
        if clip.transcript:
            edits, words = quality.wer_counts(clip.transcript, s.hypothesis, clip.language)
            s.wer_counts = (edits, words)
            s.wer = edits / words if words else None
        if transcribe is not None and reference:  # nothing to score it against otherwise
            s.back_transcript = transcribe(speech_audio(run), run.selected.target) \
                if run.pieces else ""
        if reference:
            s.bleu = quality.bleu([s.translation], [reference])
            s.chrf = quality.chrf([s.translation], [reference])
            if s.back_transcript is not None:
                s.asr_bleu = quality.asr_bleu([s.back_transcript], [reference])
        scores.append(s)
    return scores


@dataclass
class Summary:
    """The metrics of a set of clips (the whole run, or one target language)."""

    clips: int
    wer: float | None
    bleu: float | None
    chrf: float | None
    asr_bleu: float | None
    start_offset_s: float | None
    end_offset_s: float | None
    al_s: float | None
    laal_s: float | None
    segment_latency_s: dict[str, Any]
    stages_s: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def summarize(scores: Sequence[ClipScore]) -> Summary:
    counts = [s.wer_counts for s in scores if s.wer_counts and s.wer_counts[1]]
    with_ref = [s for s in scores if s.run.selected.clip.translations.get(s.run.selected.target)]
    refs = [s.run.selected.clip.translations[s.run.selected.target] for s in with_ref]
    back = [s for s in with_ref if s.back_transcript is not None]
    stages: dict[str, list[float]] = {}
    for s in scores:
        for name, values in s.stages.items():
            stages.setdefault(name, []).extend(values)
    return Summary(
        clips=len(scores),
        wer=sum(e for e, _ in counts) / sum(w for _, w in counts) if counts else None,
        bleu=quality.bleu([s.translation for s in with_ref], refs) if with_ref else None,
        chrf=quality.chrf([s.translation for s in with_ref], refs) if with_ref else None,
        asr_bleu=quality.asr_bleu([s.back_transcript or "" for s in back],
                                  [s.run.selected.clip.translations[s.run.selected.target]
                                   for s in back]) if back else None,
        start_offset_s=_mean(s.latency.start_offset_s for s in scores),
        end_offset_s=_mean(s.latency.end_offset_s for s in scores),
        al_s=_mean(s.latency.al_s for s in scores),
        laal_s=_mean(s.latency.laal_s for s in scores),
        segment_latency_s=stats([v for s in scores for v in s.latency.segment_latency_s])
        .as_dict(),
        stages_s={name: {**stats(v).as_dict(), "mean": float(np.mean(v))}
                  for name, v in stages.items()},
    )


def _mean(values: Any) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else None
