"""Command-line entry points of MT: the ``s2st mt`` worker and ``s2st bench mt``."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from bus.command import add_settings_flags
from bus.settings import BusSettings, add_bus_options

from .settings import MTWorkerSettings, mt_settings

DEFAULT_PAIRS = "en-es,en-ca,es-en,fr-en,pt-en"

def register(commands: Any, bench: Any) -> None:
    worker = commands.add_parser(
        "mt",
        help="run the MT worker: committed transcripts -> one translation stream per target language",
        description=(
            "Run the MT stage: reads each session's transcript stream and writes one translation "
            "stream per target language of the room (held for clause boundaries, live captions "
            "from partial transcripts on fast routes). Any number of workers share the sessions. "
            "Stops cleanly on SIGTERM/SIGINT (drains, releases its streams, exits 0)."
        ),
    )
    add_settings_flags(worker, MTWorkerSettings,
                       title="MT (each flag overrides its S2ST_MT_* variable)")
    add_bus_options(worker)
    worker.set_defaults(func=run_worker)

    parser = bench.add_parser(
        "mt",
        help="MT latency per segment, throughput and BLEU/chrF per backend and pair",
        description=(
            "Translates the development set's transcripts sentence by sentence with each "
            "backend and pair, and reports ms per segment (p50/p95), segments per second and, "
            "where reference translations exist, BLEU and chrF. Model backends are the names "
            "given in S2ST_MT_MODELS."
        ),
    )
    parser.add_argument("--backends", default="apertium",
                        help="comma-separated backend names (default: apertium)")
    parser.add_argument("--pairs", default=DEFAULT_PAIRS,
                        help=f"comma-separated SRC-TGT pairs (default: {DEFAULT_PAIRS})")
    parser.add_argument("--max-segments", type=int, default=200,
                        help="segments timed per pair (default: 200)")
    parser.add_argument("--fork-baseline", type=int, default=20, metavar="N",
                        help="also time N calls of a forked `apertium` per call, en-es (0: off)")
    parser.add_argument("--stream-holds", default="none,1.5,3",
                        help="hold timeouts (s) of the streaming table; 'none' translates every "
                             "piece as it arrives; empty: no table (default: none,1.5,3)")
    parser.add_argument("--stream-words", type=int, default=4,
                        help="words per simulated ASR commit in the streaming table (default: 4)")
    parser.add_argument("--stream-pair", default="en-es", help="pair of the streaming table")
    parser.add_argument("--data", type=Path, default=None, help="speech set folder (manifest.jsonl)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.set_defaults(func=run_bench)


def mt_settings_from_args(args: argparse.Namespace) -> Any:
    """The MT settings from the environment and flags; exits 2 with a clear message if invalid."""
    try:
        return mt_settings(args)
    except ValueError as exc:
        print(f"s2st mt: invalid MT settings: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run_worker(args: argparse.Namespace) -> int:
    from bus.command import run_async
    from bus.runtime import Worker
    from pipeline import PIPELINE

    from .errors import StartupError
    from .stage import MTStage

    stage = MTStage(mt_settings_from_args(args))

    async def main(settings: BusSettings) -> int:
        await Worker(stage, settings, topology=PIPELINE).run(handle_signals=True)
        return 0

    try:
        return run_async(args, main)
    except StartupError as exc:
        print(f"s2st mt: {exc}", file=sys.stderr)
        return 2


def run_bench(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .bench import as_json, bench_fork, bench_pair, bench_streaming, report, streaming_report
    from .config import MTSettings, build_router
    from .corpus import load_sentences, split_sentences
    from .errors import MTError

    corpus = load_sentences(args.data)
    settings = MTSettings.from_env()
    results = []
    failures: list[str] = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        settings.backends = f"*={backend}"
        router = build_router(settings)
        try:
            for pair in [p.strip() for p in args.pairs.split(",") if p.strip()]:
                src, _, tgt = pair.partition("-")
                try:
                    results.append(bench_pair(router, backend, src, tgt, corpus, args.max_segments))
                except (MTError, ValueError) as exc:
                    failures.append(f"{backend} {pair}: {exc}")
        finally:
            router.close()
    if args.fork_baseline > 0:
        segments = [s for row in corpus if row.lang == "en" for s in split_sentences(row.text)]
        results.append(bench_fork("eng-spa", segments[: args.fork_baseline]))
    streaming = []
    holds = [h.strip() for h in args.stream_holds.split(",") if h.strip()]
    if holds:
        settings.backends = "*=apertium" if "apertium" in args.backends else f"*={args.backends.split(',')[0]}"
        router = build_router(settings)
        src, _, tgt = args.stream_pair.partition("-")
        try:
            for hold in holds:
                timeout = None if hold == "none" else float(hold)
                streaming.append(bench_streaming(router, corpus, src, tgt, args.stream_words, timeout))
        except (MTError, ValueError) as exc:
            failures.append(f"streaming {args.stream_pair}: {exc}")
        finally:
            router.close()
    print(report(results))
    if streaming:
        print()
        print("streaming: delay from a piece's commit to its release for translation")
        print(streaming_report(streaming))
    for failure in failures:
        print(f"skipped: {failure}")
    if args.json is not None:
        meta = {"bench": "mt", "host": platform.node(), "python": platform.python_version(),
                "skipped": failures, "streaming": [asdict(r) for r in streaming]}
        args.json.write_text(json.dumps(as_json(results, meta), indent=2))
        print(f"wrote {args.json}")
    return 0 if results else 1
