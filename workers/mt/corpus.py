"""Real text from the development speech set, for the MT quality tests and the benchmark."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import TranscriptIn

USABLE_QUALITY = ("reference", "reference-words", "derived")


def default_speech_dir() -> Path:
    root = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("S2ST_SPEECH_DIR", root.parent / "shared" / "data" / "speech"))


@dataclass(frozen=True)
class Sentence:
    clip: str
    lang: str
    text: str
    references: dict[str, str]  # target language -> human reference translation
    duration_s: float = 0.0


def load_sentences(speech_dir: Path | None = None) -> list[Sentence]:
    """Every clip with a trustworthy transcript, with its reference translations if any."""
    path = (speech_dir or default_speech_dir()) / "manifest.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"speech manifest not found: {path} (set S2ST_SPEECH_DIR)")
    out: list[Sentence] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("transcript_quality") not in USABLE_QUALITY or not row.get("transcript"):
            continue
        refs = {
            lang: row[f"translation_{lang}"]
            for lang in ("en", "es")
            if row.get(f"translation_{lang}")
        }
        out.append(
            Sentence(row["id"], row["language"], row["transcript"], refs, float(row.get("duration_s") or 0))
        )
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of a transcript, at the same boundaries the streaming segmenter uses."""
    from .segmenter import ClauseSegmenter, Piece

    segmenter = ClauseSegmenter(min_clause_words=10_000, max_words=10_000)
    piece = Piece(0, text, "xx", "u", 0, 1, 0.0, 1.0)
    spans = segmenter.push(piece, 0.0) + segmenter.flush()
    return [s.text for s in spans]


def simulate_commits(
    sentences: Sequence[Sentence], words_per_piece: int, t0: float = 0.0
) -> list[TranscriptIn]:
    """The committed pieces a streaming ASR would publish for these clips, one utterance per
    clip, with capture times spread over each clip's duration by word count. A piece
    "arrives" at its ``capture_end`` (an ASR with no delay of its own)."""
    from .engine import TranscriptIn

    events: list[TranscriptIn] = []
    offset = t0
    for sentence in sentences:
        words = sentence.text.split()
        duration = sentence.duration_s or 0.4 * len(words)
        for start in range(0, len(words), words_per_piece):
            end = min(len(words), start + words_per_piece)
            a = offset + duration * start / len(words)
            b = offset + duration * end / len(words)
            events.append(TranscriptIn(
                seq=len(events) + 1, kind="committed", utterance=sentence.clip,
                text=" ".join(words[start:end]), lang=sentence.lang,
                sample_start=round((a - t0) * 16000), sample_end=round((b - t0) * 16000),
                capture_start=a, capture_end=b, final=end == len(words),
            ))
        offset += duration + 0.5
    return events
