"""The clips of an evaluation: a manifest in the format of the development speech set.

One JSON object per line with at least ``id``, ``audio`` (relative to the manifest, or
absolute) and ``language``; optional ``transcript`` with ``transcript_quality`` (only
``reference``, ``reference-words`` and ``derived`` transcripts are scored), ``translation_<lang>``
(reference translations) and ``duration_s``; optional ``segments``, the clip's reference
segmentation for the long-form latency figures: ``{"start": s, "end": s, "translation_<lang>":
...}`` each (segments without translations, as the LJ Speech clip's, are only read as times).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCORED_QUALITY = ("reference", "reference-words", "derived")
_LANG = re.compile(r"[a-z]{2,3}(-[A-Za-z]{2,4})?")


class ManifestError(ValueError):
    """The manifest cannot be read, or selects nothing (a one-line message)."""


def default_manifest() -> Path:
    root = Path(__file__).resolve().parents[3]
    speech = Path(os.environ.get("S2ST_SPEECH_DIR", root / "shared" / "data" / "speech"))
    return speech / "manifest.jsonl"


@dataclass(frozen=True)
class Clip:
    id: str
    audio: Path
    language: str
    duration_s: float
    transcript: str | None  # only a scorable one
    translations: dict[str, str]  # target language -> reference
    segments: tuple[SourceSegment, ...] = ()  # the reference segmentation, when given

    def default_target(self) -> str:
        return "es" if self.language == "en" else "en"

    def reference_segments(self, target: str) -> list[tuple[float, float, str]]:
        """``(start, end, reference translation)`` of each segment, when every segment has a
        reference into ``target``; else []."""
        if self.segments and all(target in seg.translations for seg in self.segments):
            return [(seg.start, seg.end, seg.translations[target]) for seg in self.segments]
        return []


@dataclass(frozen=True)
class SourceSegment:
    """One segment of a clip's reference segmentation (seconds into the clip)."""

    start: float
    end: float
    translations: dict[str, str]


@dataclass(frozen=True)
class Selected:
    clip: Clip
    target: str


@dataclass(frozen=True)
class Skipped:
    id: str
    why: str


def load(path: Path) -> list[Clip]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
    clips: list[Clip] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            clips.append(_clip(row, path.parent))
        except (ValueError, KeyError, TypeError) as exc:
            raise ManifestError(f"{path}:{n}: not a clip ({exc})") from None
    if not clips:
        raise ManifestError(f"the manifest {path} lists no clips")
    return clips


def _clip(row: dict[str, Any], base: Path) -> Clip:
    if not isinstance(row, dict):
        raise TypeError("a JSON object is expected")
    audio = Path(str(row["audio"]))
    transcript = row.get("transcript")
    if row.get("transcript_quality", "reference") not in SCORED_QUALITY:
        transcript = None
    translations = {key.removeprefix("translation_"): str(value) for key, value in row.items()
                    if key.startswith("translation_") and isinstance(value, str) and value}
    return Clip(
        id=str(row["id"]), audio=audio if audio.is_absolute() else base / audio,
        language=str(row.get("language") or "unknown"),
        duration_s=float(row.get("duration_s") or 0.0),
        transcript=str(transcript) if transcript else None, translations=translations,
        segments=tuple(_segment(seg) for seg in row.get("segments") or ()),
    )


def _segment(row: Any) -> SourceSegment:
    if not isinstance(row, dict):
        raise TypeError("a segment is a JSON object")
    start, end = float(row["start"]), float(row["end"])
    if not 0 <= start < end:
        raise ValueError(f"segment {start}-{end} s: not 0 <= start < end")
    return SourceSegment(start, end, {key.removeprefix("translation_"): str(value)
                                      for key, value in row.items()
                                      if key.startswith("translation_") and isinstance(value, str)
                                      and value})


def select(clips: Sequence[Clip], *, target: str | None = None,
           patterns: Sequence[str] = (), limit: int | None = None,
           max_duration_s: float | None = None) -> tuple[list[Selected], list[Skipped]]:
    """The clips to run, each with its target language, and the ones left out with why.

    ``patterns``: clip ids or shell patterns (``fleurs_en_*``); none means every clip.
    A clip is run when its language is one known language other than the target and it has
    a scorable reference: a transcript (WER) or a translation into the target (BLEU).
    """
    chosen: list[Selected] = []
    skipped: list[Skipped] = []
    for clip in clips:
        if patterns and not any(fnmatch.fnmatchcase(clip.id, p) for p in patterns):
            continue
        goal = target or clip.default_target()
        why = None
        if not _LANG.fullmatch(clip.language):
            why = f"language {clip.language!r} is not one language code"
        elif clip.language == goal:
            why = f"already in {goal}"
        elif clip.transcript is None and goal not in clip.translations:
            why = f"no reference to score (no transcript, no translation into {goal})"
        elif max_duration_s is not None and clip.duration_s > max_duration_s:
            why = f"longer than {max_duration_s:g} s"
        elif not clip.audio.is_file():
            why = f"no audio file {clip.audio}"
        if why is not None:
            skipped.append(Skipped(clip.id, why))
            continue
        chosen.append(Selected(clip, goal))
    if patterns:
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(c.id, p) for c in clips)]
        if unmatched:
            raise ManifestError(f"no clip matches {', '.join(unmatched)}")
    if limit is not None:
        chosen = chosen[:limit]
    if not chosen:
        reasons = "; ".join(f"{s.id}: {s.why}" for s in skipped[:3])
        raise ManifestError("no clip to evaluate" + (f" ({reasons})" if reasons else ""))
    return chosen, skipped
