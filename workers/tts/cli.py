"""Command line of the TTS part: the `s2st tts` worker and `s2st bench tts`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bus.command import add_settings_flags, env_from_args
from bus.settings import BusSettings, add_bus_options

from .settings import TTSWorkerSettings

# the voices `s2st bench tts --intelligibility` measures (ops.evaluation.tts_intelligibility)
DEFAULT_VOICES = ("kokoro:es", "espeak:es", "piper:en", "espeak:en", "edge:es")

def register(commands: Any, bench: Any) -> None:
    """Add the TTS subcommands to the `s2st` parser (heavy imports happen when run)."""
    _register_worker(commands)
    parser = bench.add_parser(
        "tts",
        help="TTS time to first audio, real-time factor and memory per backend; or "
        "(--intelligibility) how well each voice is understood",
        description=(
            "Synthesize a 15-word sentence per BACKEND:LANG case, streamed in pieces, and "
            "report load time, time to first audio, real-time factor (streamed and as one "
            "call) and resident memory. With --intelligibility: a round trip through Whisper "
            "base per voice instead."
        ),
    )
    parser.add_argument(
        "--cases",
        default="kokoro:es,piper:en,espeak:es,espeak:en",
        help="comma-separated BACKEND:LANG pairs (default: %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (default: 3)")
    parser.add_argument(
        "--first-words", type=int, default=None, help="words in the first piece (default: 4)"
    )
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    g = parser.add_argument_group(
        "intelligibility (--intelligibility)",
        "Each voice speaks the dev set's reference texts in its language; Whisper base, as "
        "ASR-BLEU, transcribes them back; WER, BLEU and chrF against the texts, and the same "
        "scores of the set's real speech in each language (the scorer's ceiling).",
    )
    g.add_argument("--intelligibility", action="store_true",
                   help="measure how well each voice is understood instead of its speed")
    g.add_argument("--voices", default=",".join(DEFAULT_VOICES),
                   help="comma-separated BACKEND:LANG[:VOICE] (default: %(default)s)")
    g.add_argument("--limit", type=int, default=None,
                   help="at most N texts per voice and N real clips per language (default: all)")
    g.add_argument("--manifest", default=None,
                   help="the speech set's manifest (default: ../shared/data/speech)")
    g.add_argument("--no-ceiling", action="store_true", help="skip the real speech")
    g.add_argument("--online", action="store_true", help="also measure online voices (edge)")
    parser.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from .bench import format_report, run
    from .splitter import SplitPolicy

    if args.intelligibility:
        return _intelligibility(args)
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    split = SplitPolicy() if args.first_words is None else SplitPolicy(first_words=args.first_words)
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    report = run(cases, args.repeat, split, args.json)
    print(format_report(report))
    return 1 if any(row["error"] for row in report["results"]) else 0


def _intelligibility(args: argparse.Namespace) -> int:
    # set by ops/evaluation/cli.py (ops.evaluation.tts_intelligibility.command): the
    # measurement uses the evaluation's scorer, which sits above this package
    command = getattr(args, "intelligibility_command", None)
    if command is None:
        print("s2st bench tts --intelligibility: needs the evaluation tools (ops.evaluation)",
              file=sys.stderr)
        return 2
    return int(command(args) or 0)


def _register_worker(commands: Any) -> None:
    parser = commands.add_parser(
        "tts",
        help="run the TTS worker: committed translations -> speech pieces of the room",
        description=(
            "Speak the committed translations of every (session, language) stream and write "
            "each speech piece to the room's speech stream as soon as it is synthesized. "
            "Stops cleanly on SIGTERM/SIGINT (finishes the segment in hand, exits 0)."
        ),
    )
    add_settings_flags(parser, TTSWorkerSettings,
                       title="TTS (each flag overrides its S2ST_TTS_* variable)")
    add_bus_options(parser)
    parser.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:
    from bus.command import run_async

    try:
        stage = build_stage(args)
    except ValueError as exc:
        print(f"s2st tts: invalid settings: {exc}", file=sys.stderr)
        return 2

    async def main(settings: BusSettings) -> int:
        from bus.runtime import Worker
        from pipeline import PIPELINE

        from .stage import TtsStartupError

        try:
            await Worker(stage, settings, topology=PIPELINE).run(handle_signals=True)
        except TtsStartupError as exc:
            print(f"s2st tts: {exc}", file=sys.stderr)
            return 1
        return 0

    return run_async(args, main)


def build_stage(args: argparse.Namespace, env: dict[str, str] | None = None) -> Any:
    """The TTS stage from S2ST_TTS_* variables and flags; ValueError names a bad setting."""
    from .config import TtsConfig
    from .engine import TtsEngine
    from .stage import TTSStage

    env = env_from_args(TTSWorkerSettings, args, env)
    config = TtsConfig.from_env(env)
    threads = _positive(env, "S2ST_TTS_THREADS")
    parallel = _positive(env, "S2ST_TTS_PARALLEL") or 1
    if threads is not None:
        from .backends._onnx import set_cpu_threads

        set_cpu_threads(threads)  # for the ONNX voices when they load
    warm = env.get("S2ST_TTS_WARM", "").strip()
    warm_langs = None
    if warm:
        warm_langs = [] if warm.lower() == "none" else [x.strip() for x in warm.split(",")
                                                        if x.strip()]
    return TTSStage(TtsEngine(config), warm_langs=warm_langs, parallel=parallel)


def _positive(env: dict[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be an integer >= 1, not {raw!r}")
    return int(raw)
