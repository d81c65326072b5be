"""Realistic speech-stream content for the player and web tests.

The "translated speech" of a segment is a real Spanish (or other) clip of the development
set, resampled to 24 kHz and cut into pieces the way the TTS stage streams them; the source
timeline (capture_start/capture_end) is that of a live session that started at ``t0``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bus.events import ControlEvent, Speech, Transcript, Translation

RATE = 24_000


def load_clip(path: Path, seconds: float | None = None, rate: int = RATE) -> np.ndarray:
    """A clip as int16 mono at ``rate``, optionally cut to its first ``seconds``."""
    import soundfile
    import soxr

    audio, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if seconds is not None:
        mono = mono[: int(seconds * sr)]
    out = soxr.resample(mono, sr, rate)
    peak = float(np.abs(out).max()) or 1.0
    return (out / peak * 0.5 * 32767).astype("<i2")


@dataclass
class SegmentSpec:
    session: str
    seq: int
    capture_start: float
    capture_end: float
    pcm: np.ndarray
    text: str
    speaker: str = ""


def speech_pieces(room: str, lang: str, seg: SegmentSpec, parts: int) -> list[Speech]:
    """One segment cut into ``parts`` pieces (seq = segment, part = 0.., last on the final)."""
    chunks = np.array_split(seg.pcm, parts)
    words = seg.text.split()
    out = []
    for i, chunk in enumerate(chunks):
        text = " ".join(words[i * len(words) // parts:(i + 1) * len(words) // parts])
        out.append(Speech(
            room=room, session=seg.session, seq=seg.seq, capture_start=seg.capture_start,
            capture_end=seg.capture_end, lang=lang, src_seq=seg.seq, part=i,
            last=i == parts - 1, text=text, rate=RATE, samples=len(chunk),
            duration=len(chunk) / RATE, speaker=seg.speaker, pcm=chunk.tobytes(),
            emitted=time.time(),
        ))
    return out


def end_marker(room: str, session: str) -> ControlEvent:
    now = time.time()
    return ControlEvent.end_of(room, session, at=now, emitted=now)


def transcript(room: str, session: str, seq: int, kind: str, text: str, t0: float, t1: float,
               utterance: int = 0, final: bool = False) -> Transcript:
    return Transcript(room=room, session=session, seq=seq, capture_start=t0, capture_end=t1,
                      kind=kind, utterance=utterance, text=text, lang="en", sample_start=0,
                      sample_end=int((t1 - t0) * 16000), final=final)  # type: ignore[arg-type]


def translation(room: str, session: str, seq: int, kind: str, text: str, source: str,
                t0: float, t1: float, lang: str = "es", utterance: int = 0) -> Translation:
    return Translation(room=room, session=session, seq=seq, capture_start=t0, capture_end=t1,
                       kind=kind, utterance=utterance, src_seq=seq, src_lang="en", lang=lang,
                       text=text, source_text=source, final=kind == "committed")  # type: ignore[arg-type]


def keyed(pieces: list[Any]) -> list[tuple[str, int, int]]:
    return [(p.session, p.seq, p.part) for p in pieces]
