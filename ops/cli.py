"""The `s2st` command line.

Each part of the system registers its own subcommands from its own package
(`register(commands, bench)` in a module listed in COMMAND_MODULES), so the
parts stay independent and a missing optional extra only hides its commands.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "ops.commands",
    "capture_agent.cli",
    "workers.asr.cli",
    "workers.mt.cli",
    "workers.tts.cli",
    "workers.redact",
    "player_agent.cli",
    "ops.stack",
    "ops.demo",
    "ops.status",
    "ops.session_view",
    "ops.replay",
    "ops.export",
    "ops.acl",
    "ops.evaluation.cli",
    "ops.soak.cli",
    "ops.gpu",
)

DESCRIPTION = """\
Real-time speech-to-speech translation for multi-room conferences, on Redis Streams.

The parts, in the order speech flows through them:
  capture   a microphone or file -> VAD -> audio chunk events of one session
  asr       audio chunks -> partial and committed transcripts (faster-whisper)
  mt        committed transcripts -> one translation per target language of the room
  tts       translations -> synthesized speech pieces
  play      a room's speech in one language -> speakers or a WAV file, with latency
Every hop is a Redis stream; any number of each worker may run on any host.
Settings come from S2ST_* environment variables or flags (see `s2st <cmd> --help`).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s2st",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench_parser = commands.add_parser(
        "bench",
        help="benchmarks writing JSON and a short report",
        description="Benchmarks: each writes a JSON file (--json) and prints a short report.",
    )
    bench = bench_parser.add_subparsers(dest="bench", metavar="WHAT")
    bench_parser.set_defaults(func=lambda args: _usage(bench_parser))
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # that part is not built yet
            raise
        module.register(commands, bench)
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The process entry point (`s2st` and `python -m ops.cli`)."""
    code = main()
    # The command is done: a SIGTERM from now on (a supervisor stopping a child that has
    # just finished on its own) must not turn the exit status into "killed by a signal"
    # while the interpreter shuts down. The event loop put back the default action when it
    # closed; only this process ignores it, for the moments it has left.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    entry()
