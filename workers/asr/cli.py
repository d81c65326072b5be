"""Command-line entry points of the ASR stage: `s2st asr` (the worker) and `s2st bench asr`.

Heavy libraries are imported only inside the functions that run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_SPEECH_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "speech"


def register(commands: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    _register_worker(commands)
    _register_bench(bench)


def _register_worker(commands: argparse._SubParsersAction) -> None:
    from bus.settings import add_bus_options

    env = os.environ.get
    p = commands.add_parser(
        "asr",
        help="run an ASR worker: audio chunks -> partial and committed transcripts",
        description=(
            "Streaming speech recognition (faster-whisper, LocalAgreement-2) of every session "
            "this worker owns; any number of workers share the sessions. Each flag overrides "
            "its S2ST_ASR_* variable."
        ),
    )
    p.add_argument("--model", default=env("S2ST_ASR_MODEL", "tiny.en"),
                   help="tiny.en, base, small, large-v3... or a local folder (S2ST_ASR_MODEL)")
    p.add_argument("--device", default=env("S2ST_ASR_DEVICE", "auto"), help="auto, cpu or cuda")
    p.add_argument("--compute-type", default=env("S2ST_ASR_COMPUTE_TYPE", "auto"),
                   help="auto: int8 on CPU, float16 on CUDA")
    p.add_argument("--threads", type=int, default=_int_env("S2ST_ASR_THREADS"),
                   help="CPU threads of the model")
    p.add_argument("--task", choices=["transcribe", "translate", "auto"],
                   default=env("S2ST_ASR_TASK", "transcribe"),
                   help="translate: Whisper writes English text from any language; auto: it "
                        "does so for sessions of rooms that listen only in English")
    p.add_argument("--language", default=env("S2ST_ASR_LANGUAGE"),
                   help="override the sessions' source language (e.g. auto)")
    p.add_argument("--min-decode-s", type=float,
                   default=float(env("S2ST_ASR_MIN_DECODE_S", "0.5")),
                   help="new audio needed before an utterance is decoded again")
    p.add_argument("--beam-size", type=int, default=int(env("S2ST_ASR_BEAM_SIZE", "1")))
    p.add_argument("--max-batch", type=int, default=int(env("S2ST_ASR_MAX_BATCH", "16")),
                   help="sessions decoded together in one batch")
    add_bus_options(p)
    p.set_defaults(func=run_worker_command)


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def run_worker_command(args: argparse.Namespace) -> int:
    from bus.runtime import Worker
    from bus.settings import BusSettings
    from ops.runner import run_async

    from .models import ModelNotAvailable
    from .stage import ASRConfig, ASRStage

    if args.min_decode_s <= 0 or args.beam_size < 1 or args.max_batch < 1:
        print("s2st asr: --min-decode-s must be > 0, --beam-size and --max-batch >= 1",
              file=sys.stderr)
        return 2
    config = ASRConfig(model=args.model, device=args.device, compute_type=args.compute_type,
                       cpu_threads=args.threads, task=args.task, language=args.language,
                       min_decode_s=args.min_decode_s, beam_size=args.beam_size,
                       max_batch=args.max_batch)

    async def main(settings: BusSettings) -> int:
        try:
            await Worker(ASRStage(config), settings, root_family="audio").run(
                handle_signals=True)
        except ModelNotAvailable as exc:
            print(f"s2st asr: {exc}", file=sys.stderr)
            return 2
        return 0

    return run_async(args, main)


def _register_bench(bench: argparse._SubParsersAction) -> None:
    parser = bench.add_parser(
        "asr",
        help="streaming ASR: RTF, committed-word latency, WER vs offline, sessions per worker",
        description=(
            "Replays a recording in 0.5 s chunks in computation-aware simulated real time "
            "(a word's latency is its commit time minus its end in the audio, counting the "
            "decoding time), compares streaming with offline WER, and finds how many "
            "simultaneous sessions one worker process serves in real time."
        ),
    )
    parser.add_argument("--models", default="tiny.en", help="comma-separated (tiny.en,base)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--compute-type", default="auto", help="auto: int8 CPU, float16 CUDA")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per model")
    parser.add_argument(
        "--speech-dir",
        type=Path,
        default=Path(os.environ.get("S2ST_SPEECH_DIR", DEFAULT_SPEECH_DIR)),
        help="development speech set (manifest.jsonl)",
    )
    parser.add_argument("--clip", default=None, help="clip id to stream (default: LJ 231 s)")
    parser.add_argument("--seconds", type=float, default=None, help="stream only this much")
    parser.add_argument("--chunk-s", type=float, default=0.5)
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--sessions", default="1,2,4", help="session counts for capacity")
    parser.add_argument("--capacity-seconds", type=float, default=30.0)
    parser.add_argument("--latency-limit", type=float, default=2.5, help="p95 limit (s)")
    parser.add_argument(
        "--parts", default="stream,capacity", help="any of stream,capacity (comma-separated)"
    )
    parser.add_argument(
        "--translate",
        action="store_true",
        help="also compare Whisper translate with ASR + Apertium (BLEU, FLEURS es/fr/de)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    parser.set_defaults(func=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    from .bench import DEFAULT_CLIP, BenchSettings, run_bench, short_report
    from .models import ModelNotAvailable

    try:
        sessions = tuple(int(x) for x in args.sessions.split(",") if x.strip())
    except ValueError:
        print(f"--sessions must be integers, got {args.sessions!r}", file=sys.stderr)
        return 2
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = set(parts) - {"stream", "capacity"}
    if unknown:
        print(f"unknown --parts: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    settings = BenchSettings(
        speech_dir=args.speech_dir,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        device=args.device,
        compute_type=args.compute_type,
        threads=args.threads,
        clip=args.clip or DEFAULT_CLIP,
        seconds=args.seconds,
        chunk_s=args.chunk_s,
        beam_size=args.beam_size,
        sessions=sessions,
        capacity_seconds=args.capacity_seconds,
        latency_limit_s=args.latency_limit,
        translate=args.translate,
        parts=parts,
    )
    try:
        report = run_bench(settings)
    except (ModelNotAvailable, FileNotFoundError, KeyError) as exc:
        print(f"s2st bench asr: {exc}", file=sys.stderr)
        return 1
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(short_report(report))
    return 0
