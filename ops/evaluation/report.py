"""What an evaluation writes: the JSON of every figure, a short Markdown report, a plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ops.evaluation.manifest import Skipped
from ops.evaluation.score import ClipScore, Summary, output_pieces, summarize, voice_seconds

STAGE_ORDER = ("capture->asr", "asr", "asr->mt", "mt", "mt->tts", "tts", "tts->written",
               "written->player", "player")


def clip_dict(s: ClipScore) -> dict[str, Any]:
    run = s.run
    clip = run.selected.clip
    return {
        "id": clip.id, "language": clip.language, "target": run.selected.target,
        "room": run.room, "session": run.session, "duration_s": run.source_s,
        "wer": s.wer, "bleu": s.bleu, "chrf": s.chrf, "asr_bleu": s.asr_bleu,
        **{k: v for k, v in s.latency.as_dict().items() if k != "source_s"},
        "pieces": len(run.pieces), "segments": sum(1 for p in run.pieces if p.part == 0),
        "voices": voice_seconds(run.pieces),
        "transcript": s.hypothesis, "translation": s.translation,
        "back_transcript": s.back_transcript,
        "reference_transcript": clip.transcript,
        "reference_translation": clip.translations.get(run.selected.target),
        "played_wav": str(run.played_wav) if run.played_wav else None,
        "capture_status": run.capture_status, "error": run.error,
    }


def build(scores: Sequence[ClipScore], skipped: Sequence[Skipped],
          meta: dict[str, Any]) -> dict[str, Any]:
    overall = summarize(scores)
    targets = sorted({s.run.selected.target for s in scores})
    out: dict[str, Any] = {**meta, **overall.as_dict()}
    if len(targets) > 1:
        out["by_target"] = {t: summarize([s for s in scores if s.run.selected.target == t])
                            .as_dict() for t in targets}
    out["per_clip"] = [clip_dict(s) for s in scores]
    out["skipped"] = [{"id": s.id, "why": s.why} for s in skipped]
    return out


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _f(value: Any, digits: int = 2, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    return f"{value * scale:.{digits}f}"


def markdown(data: dict[str, Any], plot: Path | None) -> str:
    seg = data["segment_latency_s"]
    lines = [
        "# s2st evaluation",
        "",
        f"`{data['command']}`  ",
        f"{data['started']}, {data['clips']} clips ({data['audio_s']:.0f} s of speech) of "
        f"`{data['manifest']}`, {data['parallel']} at a time; ASR {data['asr_models']}, "
        f"MT {data['mt_backends']}, TTS {data['tts_backends']}.",
        "",
        "| WER | BLEU | chrF | ASR-BLEU | StartOffset | EndOffset | AL | LAAL | LongYAAL | "
        "StreamLAAL | segment latency p50 / p95 / max |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {_f(data['wer'], 1, 100)} % | {_f(data['bleu'], 1)} | {_f(data['chrf'], 1)} | "
        f"{_f(data['asr_bleu'], 1)} | {_f(data['start_offset_s'])} s | "
        f"{_f(data['end_offset_s'])} s | {_f(data['al_s'])} s | {_f(data['laal_s'])} s | "
        f"{_f(data['long_yaal_s'])} s | {_f(data['stream_laal_s'])} s | "
        f"{_f(seg['p50'])} / {_f(seg['p95'])} / {_f(seg['max'])} s (n={seg['count']}) |",
        "",
        long_form_line(data),
        "",
    ]
    stages = data.get("stages_s") or {}
    if stages:
        lines += ["Where a segment's latency goes (p50 / p95 s, first piece of each segment):",
                  "", "| " + " | ".join(stages) + " |", "|" + "---|" * len(stages),
                  "| " + " | ".join(f"{_f(v['p50'])} / {_f(v['p95'])}" for v in stages.values())
                  + " |", ""]
    for lang, sub in (data.get("by_target") or {}).items():
        s = sub["segment_latency_s"]
        lines.append(f"- to {lang}: {sub['clips']} clips, WER {_f(sub['wer'], 1, 100)} %, "
                     f"BLEU {_f(sub['bleu'], 1)}, chrF {_f(sub['chrf'], 1)}, ASR-BLEU "
                     f"{_f(sub['asr_bleu'], 1)}, LAAL {_f(sub['laal_s'])} s, LongYAAL "
                     f"{_f(sub['long_yaal_s'])} s, StreamLAAL {_f(sub['stream_laal_s'])} s, "
                     "segment latency "
                     f"p50 {_f(s['p50'])} s / p95 {_f(s['p95'])} s"
                     + voice_share(sub.get("voices_s") or {}))
    if data.get("by_target"):
        lines.append("")
    if plot is not None:
        lines += [f"![how long after it was spoken each segment was heard; where the time went]"
                  f"({plot.name})",
                  ""]
    lines += ["| clip | lang | WER | BLEU | ASR-BLEU | StartOffset | LAAL | LongYAAL | "
              "StreamLAAL | word onsets heard | segment p50 / max |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in data["per_clip"]:
        s = c["segment_latency_s"]
        timing = c["word_timing"]
        lines.append(f"| {c['id']} | {c['language']}->{c['target']} | {_f(c['wer'], 1, 100)} | "
                     f"{_f(c['bleu'], 1)} | {_f(c['asr_bleu'], 1)} | {_f(c['start_offset_s'])} | "
                     f"{_f(c['laal_s'])} | {_f(c['long_yaal_s'])} | {_f(c['stream_laal_s'])} | "
                     f"{timing['measured']}/{timing['words']} | "
                     f"{_f(s['p50'])} / {_f(s['max'])} |"
                     + (f" {c['error']}" if c["error"] else ""))
    if data["skipped"]:
        lines += ["", f"{len(data['skipped'])} clips left out: "
                  + "; ".join(f"{s['id']} ({s['why']})" for s in data["skipped"][:12])
                  + (" ..." if len(data["skipped"]) > 12 else "")]
    lines += ["", "Definitions: docs/evaluation.md.", ""]
    return "\n".join(lines)


def voice_share(voices: dict[str, float]) -> str:
    """``, voices kokoro 80 % / espeak 20 %`` of the speech's seconds ('' when unknown)."""
    total = sum(voices.values())
    if total <= 0:
        return ""
    return ", voices " + " / ".join(f"{name} {100 * v / total:.0f} %" for name, v in voices.items())


def long_form_line(data: dict[str, Any]) -> str:
    """How the long-form figures and the word onsets were obtained, in one sentence."""
    seg = data["long_form_segments"]
    timing = data["word_timing"]
    return (f"LongYAAL and StreamLAAL on each clip's whole output against {seg['reference']} "
            f"reference segments ({seg['long_yaal_scored']} and {seg['stream_laal_scored']} "
            f"scored); output word onsets: {timing['measured']} of {timing['words']} measured "
            f"in the speech transcribed back, the rest by character position "
            f"(`{timing['source']}`).")


def plot(path: Path, scores: Sequence[ClipScore]) -> Path | None:
    """Left: every segment, when its source words ended (x) against how long after that its
    translated speech started playing at the player (y), per clip. Right: per-stage latency,
    stacked, per clip."""
    if not any(s.run.pieces for s in scores):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    end = 0.0
    for s in scores:
        firsts = [p for p in output_pieces(s.run) if p.first and p.started is not None]
        if not firsts:
            continue
        xs = [p.source_end for p in firsts]
        ys = [p.started - p.source_end for p in firsts if p.started is not None]
        left.plot(xs, ys, "o-", ms=3, lw=0.8, label=s.run.selected.clip.id[:28])
        end = max(end, *xs)
    for delay, style in ((2.0, "g--"), (3.0, "r:")):
        left.axhline(delay, color=style[0], ls=style[1:], lw=0.8, label=f"{delay:.0f} s")
    left.set_xlim(0, max(end, 1.0) * 1.02)
    left.set_ylim(bottom=0)
    left.set_xlabel("when the source words ended (s into the clip)")
    left.set_ylabel("heard that many seconds later (s)")
    left.set_title("Each segment: spoken, then heard")
    if len(scores) <= 12:
        left.legend(fontsize=7, loc="upper left")
    names = [n for n in STAGE_ORDER if any(n in s.stages for s in scores)]
    names += sorted({n for s in scores for n in s.stages} - set(names))
    labels = [s.run.selected.clip.id[:18] for s in scores]
    bottom = [0.0] * len(scores)
    for name in names:
        values = [_median(s.stages.get(name, [])) for s in scores]
        right.bar(range(len(scores)), values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_xticks(range(len(scores)), labels, rotation=60, ha="right", fontsize=7)
    right.set_ylabel("median seconds per segment")
    right.set_title("Where the latency goes")
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _median(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def write_all(json_path: Path, scores: Sequence[ClipScore], skipped: Sequence[Skipped],
              meta: dict[str, Any]) -> tuple[dict[str, Any], Path, Path | None]:
    data = build(scores, skipped, meta)
    png = plot(json_path.with_suffix(".png"), scores)
    data["plot"] = str(png) if png else None
    write_json(json_path, data)
    md = json_path.with_suffix(".md")
    md.write_text(markdown(data, png))
    return data, md, png


__all__ = ["Summary", "build", "long_form_line", "markdown", "plot", "write_all", "write_json"]
