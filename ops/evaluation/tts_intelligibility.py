"""`s2st bench tts --intelligibility`: how well each voice is understood, round trip.

Each voice speaks the dev set's reference texts in its language (the reference translations
into it, then the transcripts of the clips spoken in it) through the engine, as a listener
would hear them; Whisper base transcribes the speech back with the settings of ASR-BLEU
(:class:`ops.evaluation.quality.BackTranscriber`) and the transcripts are scored against the
texts with the evaluation's own scores: corpus WER after Whisper's normalizers, BLEU and chrF
after ASR-BLEU's normalization (lowercase, no punctuation) on both sides. The ceiling of the
scorer is the same model on the set's real speech in that language against its transcripts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ops.evaluation import quality
from ops.evaluation.manifest import Clip, default_manifest, load
from ops.evaluation.score import BACK_RATE, GAP_S
from workers.tts.backends.base import Synthesizer
from workers.tts.config import TtsConfig
from workers.tts.engine import TtsEngine

ONLINE_ONLY = {"edge": "online-only (Microsoft's service): not measured offline; --online "
                        "measures it on a host that reaches it"}
MAX_CLIP_S = 30.0  # longer clips (the 231 s LJ Speech one repeats 32 short ones) are left out
REAL = "real speech"

# 16 kHz float32 speech and its language -> the text heard
Transcribe = Callable[[np.ndarray, str], str]


@dataclass(frozen=True)
class Voice:
    backend: str
    lang: str
    voice: str | None = None  # None: the backend's default voice

    @classmethod
    def parse(cls, spec: str) -> Voice:
        backend, _, rest = spec.strip().partition(":")
        lang, _, voice = rest.partition(":")
        if not backend or not lang:
            raise ValueError(f"voice {spec!r} must look like BACKEND:LANG[:VOICE], e.g. kokoro:es")
        return cls(backend, lang, voice or None)

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.lang}" + (f":{self.voice}" if self.voice else "")


@dataclass(frozen=True)
class RefText:
    id: str  # the clip it comes from
    source: str  # "translation" (a reference translation into lang) or "transcript"
    text: str


@dataclass
class Row:
    """One text spoken by one voice (or one real clip) and heard back."""

    voice: str
    lang: str
    id: str
    source: str
    reference: str
    heard: str = ""
    speaker: str = ""  # the backend's voice that spoke it
    audio_s: float = 0.0
    synth_s: float = 0.0
    edits: int = 0
    words: int = 0
    error: str | None = None


def reference_texts(clips: Sequence[Clip], lang: str, limit: int | None = None) -> list[RefText]:
    """The texts of ``lang`` in the set: reference translations into it, then the transcripts
    of the clips spoken in it (none of a clip longer than :data:`MAX_CLIP_S`)."""
    texts = [RefText(c.id, "translation", c.translations[lang]) for c in clips
             if c.language != lang and lang in c.translations]
    texts += [RefText(c.id, "transcript", c.transcript) for c in real_clips(clips, lang)
              if c.transcript]
    return texts[:limit]


def real_clips(clips: Sequence[Clip], lang: str, limit: int | None = None) -> list[Clip]:
    """The clips spoken in ``lang`` with a scorable transcript: the scorer's ceiling."""
    return [c for c in clips if c.language == lang and c.transcript and c.audio.is_file()
            and c.duration_s <= MAX_CLIP_S][:limit]


def spoken(engine: TtsEngine, voice: Voice, text: str) -> tuple[np.ndarray, float, str]:
    """The text through the engine as a listener hears it (pieces with their pauses, a short
    gap between pieces, as ASR-BLEU hears them): 16 kHz float32, the synthesis seconds and
    the backend's voice. A piece no voice could speak raises RuntimeError."""
    from player_agent.outputs import resample_pcm

    parts: list[np.ndarray] = []
    synth_s = 0.0
    speaker = ""
    gap = np.zeros(round(GAP_S * BACK_RATE), dtype=np.float32)
    for piece in engine.speak(text, voice.lang, voice=voice.voice):
        if piece.backend != voice.backend:
            failures = ", ".join(f"{k}: {v}" for k, v in engine.stats.failures.items())
            raise RuntimeError(f"piece {piece.part} not spoken by {voice.backend} ({failures})")
        pcm = resample_pcm(piece.pcm, piece.rate, BACK_RATE)
        parts += [np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, gap]
        synth_s += piece.synth_s
        speaker = piece.voice
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), synth_s, speaker


def _heard(row: Row, audio: np.ndarray, transcribe: Transcribe) -> Row:
    row.audio_s = len(audio) / BACK_RATE
    row.heard = transcribe(audio, row.lang)
    row.edits, row.words = quality.wer_counts(row.reference, row.heard, row.lang)
    return row


def measure_voice(voice: Voice, texts: Sequence[RefText], transcribe: Transcribe,
                  backends: Mapping[str, Synthesizer] | None = None, online: bool = False
                  ) -> tuple[list[Row], str | None]:
    """Every text spoken by ``voice`` and heard back (a text it fails on is heard as nothing);
    a voice that cannot run here or needs the network (unless ``online``) is skipped with the
    reason."""
    if voice.backend in ONLINE_ONLY and not online:
        return [], ONLINE_ONLY[voice.backend]
    engine = TtsEngine(TtsConfig(backends={voice.lang: (voice.backend,)}, fallback=""),
                       backends=backends)
    try:  # loads and warms the voice: its load time is not counted as synthesis
        engine.backend(voice.backend).synthesize("ok", voice.lang, voice.voice)
    except Exception as exc:
        return [], f"cannot speak here: {type(exc).__name__}: {exc}"
    rows: list[Row] = []
    for ref in texts:
        row = Row(voice.label, voice.lang, ref.id, ref.source, ref.text)
        try:
            audio, row.synth_s, row.speaker = spoken(engine, voice, ref.text)
        except Exception as exc:
            row.error = f"{type(exc).__name__}: {exc}"  # heard as nothing: scored as such
            audio = np.zeros(0, np.float32)
        rows.append(_heard(row, audio, transcribe))
    return rows, None


def measure_real(clips: Sequence[Clip], lang: str, transcribe: Transcribe) -> list[Row]:
    from capture_agent.audio_io import load_audio

    return [_heard(Row(REAL, lang, c.id, "transcript", c.transcript or ""), load_audio(c.audio),
                   transcribe) for c in clips]


def scores(rows: Sequence[Row]) -> dict[str, Any]:
    """Corpus WER (%), BLEU and chrF of the rows, and how many texts and words they cover."""
    if not rows:
        return {"n": 0, "words": 0, "wer": None, "bleu": None, "chrf": None, "errors": 0}
    heard = [quality.normalize_for_asr_bleu(r.heard) for r in rows]
    refs = [quality.normalize_for_asr_bleu(r.reference) for r in rows]
    words = sum(r.words for r in rows)
    return {
        "n": len(rows),
        "words": words,
        "wer": round(100 * sum(r.edits for r in rows) / words, 1) if words else None,
        "bleu": round(quality.bleu(heard, refs), 1),
        "chrf": round(quality.chrf(heard, refs), 1),
        "errors": sum(r.error is not None for r in rows),
    }


def summarize(label: str, lang: str, rows: Sequence[Row], skipped: str | None = None
              ) -> dict[str, Any]:
    by_source = {s: scores([r for r in rows if r.source == s])
                 for s in ("translation", "transcript") if any(r.source == s for r in rows)}
    audio = sum(r.audio_s for r in rows)
    return {"voice": label, "lang": lang, "skipped": skipped,
            "speakers": sorted({r.speaker for r in rows if r.speaker}), **scores(rows),
            "by_source": by_source, "audio_s": round(audio, 1),
            "synth_rtf": round(sum(r.synth_s for r in rows) / audio, 3) if audio and label != REAL
            else None}


def run(voices: Sequence[Voice], *, manifest: Path | None = None, limit: int | None = None,
        ceiling: bool = True, online: bool = False, json_path: str | None = None,
        transcribe: Transcribe | None = None,
        backends: Mapping[str, Synthesizer] | None = None,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure each voice, then (``ceiling``) the real speech of each of their languages;
    ``progress`` is told each line of the summary as it is done."""
    clips = load(manifest or default_manifest())
    if transcribe is None:
        transcribe = quality.BackTranscriber().transcribe
    started = time.monotonic()
    summary: list[dict[str, Any]] = []
    rows: list[Row] = []
    for voice in voices:
        texts = reference_texts(clips, voice.lang, limit)
        got, skipped = measure_voice(voice, texts, transcribe, backends, online) if texts \
            else ([], f"no reference text in {voice.lang}")
        rows += got
        summary.append(summarize(voice.label, voice.lang, got, skipped))
        if progress:
            progress(_line(summary[-1]))
    if ceiling:
        for lang in dict.fromkeys(v.lang for v in voices):
            real = measure_real(real_clips(clips, lang, limit), lang, transcribe)
            rows += real
            summary.append(summarize(REAL, lang, real,
                                     None if real else f"no real speech in {lang}"))
            if progress:
                progress(_line(summary[-1]))
    report = {
        "bench": "tts-intelligibility",
        "scorer": "Whisper base (multilingual), beam 5, language forced, as ASR-BLEU "
                  "(ops.evaluation.quality.BackTranscriber)",
        "scores": "WER: corpus, Whisper normalizers; BLEU/chrF: sacrebleu corpus, lowercase, "
                  "no punctuation (ASR-BLEU's normalization)",
        "manifest": str(manifest or default_manifest()),
        "limit": limit,
        "max_clip_s": MAX_CLIP_S,
        "host": {"cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "elapsed_s": round(time.monotonic() - started, 1),
        "summary": summary,
        "rows": [asdict(r) for r in rows],
    }
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _line(s: dict[str, Any]) -> str:
    if s["skipped"]:
        return f"{s['voice']:16} {s['lang']:4} skipped: {s['skipped']}"
    sub = s["by_source"].get("transcript")
    part = (f"{sub['n']:3d} {_fmt(sub['wer'])} {_fmt(sub['bleu'])} {_fmt(sub['chrf'])}"
            if sub else "-")
    errors = f"  ({s['errors']} not spoken)" if s["errors"] else ""
    return (f"{s['voice']:16} {s['lang']:4} {s['n']:3d} {s['words']:5d} "
            f"{_fmt(s['wer']):>6} {_fmt(s['bleu']):>5} {_fmt(s['chrf']):>5}  {part}{errors}")


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"TTS intelligibility: each voice's speech heard back by {report['scorer']}",
        f"{'voice':16} {'lang':4} {'n':>3} {'words':>5} {'WER %':>6} {'BLEU':>5} {'chrF':>5}  "
        "transcripts only: n WER BLEU chrF",
    ]
    lines += [_line(s) for s in report["summary"]]
    lines.append(f"{REAL!r}: the set's own speech in that language against its transcripts, the "
                 f"scorer's ceiling. {report['scores']}. {report['elapsed_s']:.0f} s.")
    return "\n".join(lines)


def command(args: Any) -> int:
    """`s2st bench tts --intelligibility` (wired into the TTS bench by ops/evaluation/cli.py:
    the TTS worker's package does not import the evaluation)."""
    import sys

    if args.limit is not None and args.limit < 1:
        raise SystemExit("--limit must be at least 1")
    voices = [Voice.parse(v) for v in args.voices.split(",") if v.strip()]
    report = run(
        voices, manifest=Path(args.manifest) if args.manifest else None, limit=args.limit,
        ceiling=not args.no_ceiling, online=args.online, json_path=args.json,
        progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_report(report))
    return 0
