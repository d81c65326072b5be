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
    from bus.command import add_settings_flags
    from bus.settings import add_bus_options

    from .settings import ASRSettings

    p = commands.add_parser(
        "asr",
        help="run an ASR worker: audio chunks -> partial and committed transcripts",
        description=(
            "Streaming speech recognition (faster-whisper, LocalAgreement-2) of every session "
            "this worker owns; any number of workers share the sessions. Each flag overrides "
            "its S2ST_ASR_* variable."
        ),
    )
    add_settings_flags(p, ASRSettings, title="ASR (each flag overrides its S2ST_ASR_* variable)")
    add_bus_options(p)
    p.set_defaults(func=run_worker_command)


def run_worker_command(args: argparse.Namespace) -> int:
    from bus.command import run_async, settings_from_args
    from bus.runtime import Worker
    from bus.settings import BusSettings
    from pipeline import PIPELINE

    from .models import ModelNotAvailable
    from .settings import ASRSettings
    from .stage import ASRStage

    config = settings_from_args(ASRSettings, args, program="s2st asr").config()

    async def main(settings: BusSettings) -> int:
        try:
            await Worker(ASRStage(config), settings, topology=PIPELINE).run(handle_signals=True)
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
