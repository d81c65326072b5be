"""`s2st bench asr`: speed, latency, accuracy and capacity of the streaming recognizer.

Parts (each optional):

* **stream**: replay a clip (default: the 231 s continuous LJ Speech clip) in 0.5 s chunks in
  computation-aware simulated real time (see :mod:`workers.asr.simulate`); report RTF,
  committed-word latency p50/p95 (word end in the audio -> its committed event),
  partial-to-commit delay, and WER of streaming vs offline decoding of the same audio;
* **capacity**: N sessions speaking at once, served by one worker process that batches
  their decodes; the largest N whose committed-word latency p95 stays under the limit is the
  number of sessions the process sustains in real time;
* **translate**: Whisper's own translate task vs ASR + Apertium on the Spanish, French and
  German FLEURS clips (corpus BLEU against the FLORES English references).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import load_audio
from .decoder import SAMPLE_RATE, DecodeRequest, DecoderOptions, WhisperDecoder
from .textnorm import word_error_rate

DEFAULT_CLIP = "ljspeech_LJ001-0001_to_0032_continuous"
TRANSLATE_LANGS = ("es", "fr", "de")
# Apertium pipelines into English available as Debian packages (no de->en pair exists).
APERTIUM_TO_EN: dict[str, list[str]] = {
    "es": ["spa-eng"],
    "fr": ["fr-es", "spa-eng"],
    "pt": ["pt-es", "spa-eng"],
}


@dataclass(frozen=True)
class BenchSettings:
    speech_dir: Path
    models: Sequence[str] = ("tiny.en",)
    device: str = "auto"
    compute_type: str = "auto"
    threads: int | None = None
    clip: str = DEFAULT_CLIP
    seconds: float | None = None  # cut the stream clip (None: whole clip)
    chunk_s: float = 0.5
    beam_size: int = 1
    sessions: Sequence[int] = (1, 2, 4)
    capacity_seconds: float = 30.0
    latency_limit_s: float = 2.5
    translate: bool = False
    parts: Sequence[str] = ("stream", "capacity")


def percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def read_manifest(speech_dir: Path) -> dict[str, dict[str, Any]]:
    path = speech_dir / "manifest.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no manifest.jsonl in {speech_dir} (set --speech-dir)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["id"]: {**row, "path": speech_dir / row["audio"]} for row in rows}


def run_bench(settings: BenchSettings) -> dict[str, Any]:
    from .models import choose_device, load_model

    manifest = read_manifest(settings.speech_dir)
    choice = choose_device(settings.device, settings.compute_type)
    report: dict[str, Any] = {
        "host": {
            "cpus": os.cpu_count(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "device": choice.device,
        "compute_type": choice.compute_type,
        "chunk_s": settings.chunk_s,
        "models": {},
    }
    for name in settings.models:
        model = load_model(name, choice.device, choice.compute_type, settings.threads)
        decoder = WhisperDecoder(model, DecoderOptions(beam_size=settings.beam_size))
        entry: dict[str, Any] = {}
        if "stream" in settings.parts:
            entry["stream"] = bench_stream(decoder, manifest, settings)
        if "capacity" in settings.parts:
            entry["capacity"] = bench_capacity(decoder, manifest, settings)
        report["models"][name] = entry
    if settings.translate:
        base = WhisperDecoder(
            load_model("base", choice.device, choice.compute_type, settings.threads)
        )
        report["translate"] = bench_translate(base, manifest)
    report["host"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def _clip_audio(manifest: dict[str, dict[str, Any]], settings: BenchSettings) -> np.ndarray:
    if settings.clip not in manifest:
        raise KeyError(f"clip {settings.clip!r} is not in the manifest")
    audio = load_audio(manifest[settings.clip]["path"])
    if settings.seconds:
        audio = audio[: int(settings.seconds * SAMPLE_RATE)]
    return audio


def bench_stream(
    decoder: WhisperDecoder, manifest: dict[str, dict[str, Any]], settings: BenchSettings
) -> dict[str, Any]:
    from .simulate import make_chunks, replay
    from .streaming import StreamConfig, StreamingRecognizer

    audio = _clip_audio(manifest, settings)
    seconds = len(audio) / SAMPLE_RATE
    language = "en" if not decoder.multilingual else manifest[settings.clip]["language"]

    t0 = time.perf_counter()
    segments, _ = decoder.model.transcribe(audio, language=language, beam_size=1)
    offline_text = " ".join(s.text.strip() for s in segments)
    offline_s = time.perf_counter() - t0

    rec = StreamingRecognizer(decoder, StreamConfig(language=language))
    result = replay(rec, make_chunks(audio, chunk_s=settings.chunk_s), chunk_s=settings.chunk_s)
    latencies = result.word_latencies()
    p2c = result.partial_to_commit()
    out: dict[str, Any] = {
        "clip": settings.clip,
        "audio_s": round(seconds, 2),
        "rtf_offline": round(offline_s / seconds, 4),
        "rtf_streaming": round(result.rtf, 4),
        "decodes": result.decodes,
        "skipped_decodes": result.skipped_decodes,
        "max_buffer_s": round(rec.max_buffer_seconds, 2),
        "committed_words": len(latencies),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "partial_to_commit_p50_s": percentile(p2c, 50),
        "partial_to_commit_p95_s": percentile(p2c, 95),
    }
    reference = manifest[settings.clip].get("transcript")
    quality = manifest[settings.clip].get("transcript_quality")
    if (
        reference
        and quality in ("reference", "reference-words", "derived")
        and not settings.seconds
    ):
        wer_off = word_error_rate([reference], [offline_text])
        wer_str = word_error_rate([reference], [result.committed_text()])
        out["wer_offline"] = round(wer_off, 4)
        out["wer_streaming"] = round(wer_str, 4)
        out["wer_delta_points"] = round(100 * (wer_str - wer_off), 2)
        whisper = _whisper_normalizer(manifest[settings.clip].get("language", ""))
        if whisper is not None:  # as s2st eval scores (numbers and spellings normalized)
            wer_off = word_error_rate([whisper(reference)], [whisper(offline_text)])
            wer_str = word_error_rate([whisper(reference)], [whisper(result.committed_text())])
            out["wer_offline_whisper_norm"] = round(wer_off, 4)
            out["wer_streaming_whisper_norm"] = round(wer_str, 4)
            out["wer_delta_points_whisper_norm"] = round(100 * (wer_str - wer_off), 2)
    out["wer_streaming_vs_offline_text"] = round(
        word_error_rate([offline_text], [result.committed_text()]), 4
    )
    return out


def _whisper_normalizer(lang: str) -> Any:
    """Whisper's English text normalizer (the one `s2st eval` uses), if installed."""
    if lang != "en":
        return None
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError:
        return None
    return EnglishTextNormalizer()


def bench_capacity(
    decoder: WhisperDecoder, manifest: dict[str, dict[str, Any]], settings: BenchSettings
) -> dict[str, Any]:
    from .batching import BatchScheduler
    from .simulate import make_chunks, replay_many
    from .streaming import StreamConfig, StreamingRecognizer

    audio = _clip_audio(manifest, settings)[: int(settings.capacity_seconds * SAMPLE_RATE)]
    language = "en" if not decoder.multilingual else manifest[settings.clip]["language"]
    rows = []
    sustained = 0
    for n in settings.sessions:
        scheduler = BatchScheduler(decoder, max_batch=32)
        sessions = {
            f"s{i}": (
                StreamingRecognizer(None, StreamConfig(language=language)),
                make_chunks(audio, chunk_s=settings.chunk_s),
            )
            for i in range(n)
        }
        t0 = time.perf_counter()
        results = replay_many(scheduler, sessions, chunk_s=settings.chunk_s)
        wall = time.perf_counter() - t0
        latencies = [x for r in results.values() for x in r.word_latencies()]
        p95 = percentile(latencies, 95)
        ok = p95 is not None and p95 <= settings.latency_limit_s
        rows.append(
            {
                "sessions": n,
                "latency_p50_s": percentile(latencies, 50),
                "latency_p95_s": p95,
                "compute_per_audio_s": round(wall / (len(audio) / SAMPLE_RATE), 3),
                # sessions this per-session cost would allow if the CPU did nothing else
                "throughput_sessions": round(n * (len(audio) / SAMPLE_RATE) / wall, 1),
                "decode_calls": scheduler.batches,
                "buffers_decoded": scheduler.decoded,
                "real_time": ok,
            }
        )
        if ok:
            sustained = max(sustained, n)
        else:
            break  # more sessions only get slower
    return {
        "audio_s_per_session": round(len(audio) / SAMPLE_RATE, 2),
        "latency_limit_s": settings.latency_limit_s,
        "runs": rows,
        "sessions_sustained": sustained,
    }


def apertium_to_english(text: str, lang: str) -> str | None:
    """Translate with the Debian Apertium pairs, pivoting through Spanish; None if no route."""
    pairs = APERTIUM_TO_EN.get(lang)
    if pairs is None or shutil.which("apertium") is None:
        return None
    for pair in pairs:
        done = subprocess.run(
            ["apertium", "-u", pair], input=text, capture_output=True, text=True, check=True
        )
        text = done.stdout.strip()
    return text


def bench_translate(base: WhisperDecoder, manifest: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import sacrebleu

    out: dict[str, Any] = {}
    for lang in TRANSLATE_LANGS:
        rows = [
            r
            for key, r in sorted(manifest.items())
            if key.startswith(f"fleurs_{lang}_") and r.get("translation_en")
        ]
        refs = [r["translation_en"] for r in rows]
        whisper_en, asr_text, apertium_en = [], [], []
        t_tr = t_asr = 0.0
        for r in rows:
            audio = load_audio(r["path"])
            t0 = time.perf_counter()
            whisper_en.append(_long_decode(base, audio, lang, "translate"))
            t_tr += time.perf_counter() - t0
            t0 = time.perf_counter()
            asr_text.append(_long_decode(base, audio, lang, "transcribe"))
            t_asr += time.perf_counter() - t0
            apertium_en.append(apertium_to_english(asr_text[-1], lang))
        entry: dict[str, Any] = {
            "clips": len(rows),
            "whisper_translate_bleu": round(sacrebleu.corpus_bleu(whisper_en, [refs]).score, 2),
            "asr_wer": round(word_error_rate([r["transcript"] for r in rows], asr_text), 4),
            "whisper_translate_s": round(t_tr, 2),
            "asr_s": round(t_asr, 2),
        }
        if all(x is not None for x in apertium_en):
            hyps = [x or "" for x in apertium_en]
            entry["asr_apertium_bleu"] = round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
            entry["apertium_route"] = " -> ".join(APERTIUM_TO_EN[lang])
        else:
            entry["asr_apertium_bleu"] = None
            entry["apertium_route"] = f"none: Debian has no Apertium pair from {lang!r} to English"
        entry["example"] = {
            "reference": refs[0],
            "whisper_translate": whisper_en[0],
            "asr_apertium": apertium_en[0],
        }
        out[lang] = entry
    return out


def _long_decode(decoder: WhisperDecoder, audio: np.ndarray, lang: str, task: str) -> str:
    """Offline decode of a clip up to a few windows long (28 s pieces)."""
    step = 28 * SAMPLE_RATE
    texts = []
    for a in range(0, len(audio), step):
        piece = audio[a : a + step]
        texts.append(decoder.decode(DecodeRequest(piece, lang, task)).text)  # type: ignore[arg-type]
    return " ".join(t for t in texts if t)


def short_report(report: dict[str, Any]) -> str:
    lines = [
        f"ASR bench on {report['device']}/{report['compute_type']}, "
        f"{report['host']['cpus']} CPUs, load average at start "
        f"{report['host']['load_avg_at_start'][0]} (shared machine: expect contention)"
    ]
    for name, entry in report["models"].items():
        s = entry.get("stream")
        if s:
            lines.append(
                f"{name}: streaming RTF {s['rtf_streaming']} (offline {s['rtf_offline']}), "
                f"committed-word latency p50 {s['latency_p50_s']} s / p95 {s['latency_p95_s']} s, "
                f"partial->commit p50 {s['partial_to_commit_p50_s']} s / "
                f"p95 {s['partial_to_commit_p95_s']} s"
            )
            if "wer_streaming" in s:
                lines.append(
                    f"  WER streaming {100 * s['wer_streaming']:.2f}% vs offline "
                    f"{100 * s['wer_offline']:.2f}% ({s['wer_delta_points']:+.2f} points)"
                )
            if "wer_streaming_whisper_norm" in s:
                lines.append(
                    f"  with Whisper's normalizer: {100 * s['wer_streaming_whisper_norm']:.2f}% "
                    f"vs {100 * s['wer_offline_whisper_norm']:.2f}% "
                    f"({s['wer_delta_points_whisper_norm']:+.2f} points)"
                )
        c = entry.get("capacity")
        if c:
            runs = ", ".join(f"{r['sessions']}: p95 {r['latency_p95_s']} s" for r in c["runs"])
            lines.append(
                f"  capacity (limit p95 {c['latency_limit_s']} s): {runs} -> "
                f"{c['sessions_sustained']} sessions in real time"
            )
    for lang, t in report.get("translate", {}).items():
        lines.append(
            f"{lang}->en BLEU: whisper translate {t['whisper_translate_bleu']}, "
            f"ASR+Apertium {t['asr_apertium_bleu']} ({t['apertium_route']})"
        )
    return "\n".join(lines)
