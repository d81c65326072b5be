"""Scores of an evaluation run: per clip, per target language and for the whole set."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ops.evaluation import quality
from ops.evaluation.latency import (
    ClipLatency,
    OutputPiece,
    RefSegment,
    clip_latency,
    match_heard,
    stats,
    word_timing,
)
from ops.evaluation.run import ClipRun, Piece
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


def output_pieces(run: ClipRun,
                  word_starts: Sequence[tuple[float | None, ...]] = ()) -> list[OutputPiece]:
    """The pieces on the source timeline; ``word_starts``: per piece, where each of its words
    starts in it, measured (see :func:`~ops.evaluation.latency.match_heard`)."""
    t0 = run.t0
    starts = list(word_starts) or [()] * len(run.pieces)
    return [OutputPiece(emitted=p.available - t0, duration=p.duration, text=p.text,
                        source_end=p.event.capture_end - t0, started=p.started - t0,
                        first=p.part == 0, word_starts=w)
            for p, w in zip(run.pieces, starts, strict=True)]


def reference_segments(run: ClipRun) -> list[RefSegment]:
    """The long-form stream's reference segments: the manifest's segmentation when each of
    its segments has a reference into the target, else the whole clip as one segment."""
    clip, target = run.selected.clip, run.selected.target
    given = clip.reference_segments(target)
    if given:
        return [RefSegment(start, end - start, text) for start, end, text in given]
    reference = clip.translations.get(target)
    return [RefSegment(0.0, run.source_s, reference)] if reference and run.source_s > 0 else []


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
    return speech_layout(run)[0]


def speech_layout(run: ClipRun) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """:func:`speech_audio` and where each piece is in it: ``(offset, length)`` in seconds."""
    from player_agent.outputs import resample_pcm

    gap = np.zeros(round(GAP_S * BACK_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    at = 0
    for p in run.pieces:
        pcm = resample_pcm(p.event.pcm, p.event.rate, BACK_RATE)
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        spans.append((at / BACK_RATE, len(samples) / BACK_RATE))
        parts += [samples, gap]
        at += len(samples) + len(gap)
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)), spans


# transcribes 16 kHz float32 speech in a language: the text, or the text with word times
Transcriber = Callable[[np.ndarray, str], str | quality.Heard]


def score_clips(runs: Sequence[ClipRun], transcribe: Transcriber | None) -> list[ClipScore]:
    """Scores every run. ``transcribe`` (the speech transcribed back, for ASR-BLEU) may also
    give word times: those then time the output words (else their character position)."""
    scores = []
    for run in runs:
        clip = run.selected.clip
        reference = clip.translations.get(run.selected.target)
        heard: tuple[tuple[str, float, float], ...] = ()
        back: str | None = None
        spans: list[tuple[float, float]] = []
        if transcribe is not None and reference:  # nothing to score it against otherwise
            if run.pieces:
                audio, spans = speech_layout(run)
                got = transcribe(audio, run.selected.target)
                back, heard = (got.text, got.words) if isinstance(got, quality.Heard) \
                    else (got, ())
            else:
                back = ""
        starts = match_heard([p.text for p in run.pieces], spans, heard) if heard else []
        s = ClipScore(run, clip_latency(output_pieces(run, starts), run.source_s,
                                        len(reference.split()) if reference else None,
                                        reference_segments(run)),
                      stage_times(run))
        s.back_transcript = back
        if clip.transcript:
            edits, words = quality.wer_counts(clip.transcript, s.hypothesis, clip.language)
            s.wer_counts = (edits, words)
            s.wer = edits / words if words else None
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
    long_yaal_s: float | None
    stream_laal_s: float | None
    long_form_segments: dict[str, int]
    word_timing: dict[str, Any]
    segment_latency_s: dict[str, Any]
    stages_s: dict[str, dict[str, Any]] = field(default_factory=dict)
    # seconds of speech each TTS backend spoke (how much of it the neural voice said)
    voices_s: dict[str, float] = field(default_factory=dict)

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
        # OmniSTEval and simulstream average over all the reference segments of the set
        long_yaal_s=_mean(v for s in scores for v in s.latency.long_form.long_yaal),
        stream_laal_s=_mean(v for s in scores for v in s.latency.long_form.stream_laal),
        long_form_segments={
            "reference": sum(len(s.latency.long_form.long_yaal) for s in scores),
            "long_yaal_scored": sum(v is not None for s in scores
                                    for v in s.latency.long_form.long_yaal),
            "stream_laal_scored": sum(v is not None for s in scores
                                      for v in s.latency.long_form.stream_laal)},
        word_timing=word_timing(sum(s.latency.words for s in scores),
                                sum(s.latency.measured_words for s in scores)),
        segment_latency_s=stats([v for s in scores for v in s.latency.segment_latency_s])
        .as_dict(),
        stages_s={name: {**stats(v).as_dict(), "mean": float(np.mean(v))}
                  for name, v in stages.items()},
        voices_s=voice_seconds([p for s in scores for p in s.run.pieces]),
    )


def voice_seconds(pieces: Sequence[Piece]) -> dict[str, float]:
    """Seconds of speech per TTS backend (``kokoro``, ``espeak``...), largest first."""
    out: dict[str, float] = {}
    for p in pieces:
        name = p.event.backend or "unknown"
        out[name] = out.get(name, 0.0) + p.event.duration
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _mean(values: Any) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else None
