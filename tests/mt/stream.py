"""Turn real transcripts into the committed pieces a streaming ASR would publish."""

from __future__ import annotations

from typing import Any

from bus.events import Hop, Transcript
from workers.mt.engine import TranscriptIn

SAMPLE_RATE = 16000


def committed_events(
    rows: list[dict[str, Any]], words_per_piece: int = 4, t0: float = 1_700_000_000.0
) -> list[TranscriptIn]:
    """Each clip is one utterance cut into pieces of a few words; its last piece is final.

    Sample ranges and capture times are spread over the clip's duration by word count, and
    clips follow each other on the session's timeline.
    """
    events: list[TranscriptIn] = []
    seq = 0
    offset_s = 0.0
    for row in rows:
        words = row["transcript"].split()
        duration = float(row["duration_s"])
        for start in range(0, len(words), words_per_piece):
            chunk = words[start:start + words_per_piece]
            a = offset_s + duration * start / len(words)
            b = offset_s + duration * min(len(words), start + words_per_piece) / len(words)
            seq += 1
            events.append(TranscriptIn(
                seq=seq, kind="committed", utterance=row["id"], text=" ".join(chunk),
                lang=row["language"], sample_start=round(a * SAMPLE_RATE),
                sample_end=round(b * SAMPLE_RATE), capture_start=t0 + a, capture_end=t0 + b,
                final=start + words_per_piece >= len(words),
            ))
        offset_s += duration + 0.5
    return events


def lj_rows(manifest: dict[str, dict[str, Any]], count: int) -> list[dict[str, Any]]:
    rows = [manifest[f"ljspeech_LJ001-{i:04d}"] for i in range(1, count + 1)]
    assert all(r["language"] == "en" and r["transcript"] for r in rows)
    return rows


def bus_transcripts(events: list[TranscriptIn], room: str, session: str) -> list[Transcript]:
    """The same pieces as the ASR stage writes them: seqs from 0, utterances numbered from 0,
    with an ``asr`` hop in the trace."""
    utterances: dict[str, int] = {}
    out = []
    for i, e in enumerate(events):
        utterance = utterances.setdefault(e.utterance, len(utterances))
        out.append(Transcript(
            room=room, session=session, seq=i, kind=e.kind, utterance=utterance, text=e.text,
            lang=e.lang, sample_start=e.sample_start, sample_end=e.sample_end,
            capture_start=e.capture_start, capture_end=e.capture_end, final=e.final,
            emitted=e.capture_end + 0.3,
            trace=[Hop(stage="asr", worker="asr-test", t_in=e.capture_end, t_out=e.capture_end + 0.3)],
        ))
    return out


def fleurs_rows(manifest: dict[str, dict[str, Any]], lang: str = "en") -> list[dict[str, Any]]:
    rows = [r for cid, r in sorted(manifest.items()) if cid.startswith(f"fleurs_{lang}_") and r["transcript"]]
    assert len(rows) >= 5, "the development set has 5 FLEURS clips per language"
    return rows
