"""Command-line entry points of the capture agent (registered into `s2st`).

- `s2st capture --room R --session S --lang en (--file X | --device D | --stdin)`
                                                  publish a session's chunks on the bus
- `s2st capture --list-devices`                   input devices (needs pyaudio)
- `s2st capture --file X --dry-run [--fast]`      chunk lines on stdout instead of the bus
- `s2st capture --device NAME --dry-run`          the same from a microphone
- `s2st capture --stdin --stdin-rate 16000 --dry-run`   raw s16le PCM from standard input
- `s2st bench capture [--json out.json]`          CPU and memory per VAD backend

`run_capture(args, sink)` runs the capture synchronously into any sink (the dry run);
`run_publishing(args)` runs the agent on the bus (capture_agent/agent.py).
Heavy imports happen inside the functions that run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from bus.command import add_settings_flags, settings_from_args
from bus.settings import add_bus_options
from capture_agent.settings import BUFFERING, VAD_AND_CHUNKING, CaptureSettings

if TYPE_CHECKING:
    from bus.settings import BusSettings
    from capture_agent.chunker import Chunk
    from capture_agent.pipeline import CaptureConfig
    from capture_agent.sources import AudioSource


def add_capture_arguments(parser: argparse.ArgumentParser) -> None:
    """The source, VAD and chunking options (reusable by the bus-publishing command)."""
    src = parser.add_argument_group("input (one of)")
    src.add_argument("--file", help="audio file (WAV, FLAC, MP3, OGG, anything ffmpeg reads)")
    src.add_argument("--device", help="microphone by index or name (fragment); '' = default")
    src.add_argument("--stdin", action="store_true", help="raw signed 16-bit LE PCM on stdin")
    src.add_argument("--stdin-rate", type=int, default=16000, help="rate of --stdin PCM")
    src.add_argument("--stdin-channels", type=int, default=1, help="channels of --stdin PCM")
    src.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    src.add_argument(
        "--fast",
        action="store_true",
        help="send a file as fast as possible (default: real-time pace)",
    )
    add_settings_flags(parser, CaptureSettings, title="VAD and chunking", only=VAD_AND_CHUNKING)
    parser.add_argument("--no-meter", action="store_true", help="no status line on stderr")


def capture_settings(args: argparse.Namespace) -> CaptureSettings:
    """Flags over ``S2ST_CAPTURE_*`` variables over defaults; exits 2 if invalid."""
    return settings_from_args(CaptureSettings, args, program="s2st capture")


def config_from_args(args: argparse.Namespace) -> CaptureConfig:
    return capture_settings(args).config()


def source_from_args(args: argparse.Namespace) -> AudioSource:
    from capture_agent.sources import FileSource, MicrophoneSource, StdinSource

    chosen = sum([bool(args.file), args.device is not None, bool(args.stdin)])
    if chosen != 1:
        raise ValueError("give exactly one input: --file, --device or --stdin")
    if args.file:
        return FileSource(args.file, realtime=not args.fast)
    if args.stdin:
        return StdinSource(rate=args.stdin_rate, channels=args.stdin_channels)
    device: str | int | None = args.device
    return MicrophoneSource(device if device != "" else None)


def run_capture(args: argparse.Namespace, sink: Callable[[Chunk], None]) -> int:
    """Capture from the chosen source, hand every chunk to `sink`; returns an exit code.

    Bad input files, a missing microphone and bad options print one line and return 2.
    """
    from capture_agent.audio_io import AudioInputError
    from capture_agent.meter import TerminalMeter
    from capture_agent.pipeline import CaptureProcessor
    from capture_agent.sources import MicrophoneError
    from capture_agent.vad import VADUnavailable

    meter = TerminalMeter(force=False) if not args.no_meter else None
    processor: CaptureProcessor | None = None
    try:
        source = source_from_args(args)
        processor = CaptureProcessor(config_from_args(args))
        for chunk in processor.run(source):
            sink(chunk)
            if meter:
                meter.update(processor.stats)
    except (AudioInputError, MicrophoneError, VADUnavailable, ValueError) as exc:
        if meter and processor:
            meter.update(processor.stats, final=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if meter and processor:
        meter.update(processor.stats, final=True)
    return 0


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """The session a published capture belongs to, and its buffering."""
    g = parser.add_argument_group("session (required unless --dry-run)")
    g.add_argument("--room", help="room id, e.g. main-hall")
    g.add_argument("--session", help="session id, unique in the room, e.g. mic1-2024-05-01")
    g.add_argument("--lang", help="language spoken: en, es, ca, ... or auto")
    g.add_argument("--speaker", default="", help="speaker name shown to listeners")
    add_settings_flags(g, CaptureSettings, only=BUFFERING)


def run_publishing(args: argparse.Namespace) -> int:
    """Capture and publish to the bus; returns an exit code.

    0: done; 1: chunks left unwritten or the session lost; 2: bad input or options;
    3: Redis unreachable at start. The input is opened before anything is registered.
    """
    from bus.command import run_async
    from bus.ids import InvalidId, check_id, check_lang
    from capture_agent.agent import AgentOptions, CaptureAgent
    from capture_agent.audio_io import AudioInputError
    from capture_agent.meter import TerminalMeter
    from capture_agent.pipeline import CaptureProcessor
    from capture_agent.publisher import SessionRef
    from capture_agent.sources import MicrophoneError
    from capture_agent.vad import VADUnavailable

    missing = [f"--{name}" for name in ("room", "session", "lang") if not getattr(args, name)]
    if missing:
        print(f"error: {', '.join(missing)} required (or --dry-run)", file=sys.stderr)
        return 2
    try:
        session = SessionRef(
            room=check_id(args.room, "room id"),
            session=check_id(args.session, "session id"),
            source_lang=check_lang(args.lang, allow_auto=True),
            speaker=args.speaker,
        )
        settings = capture_settings(args)
        if not settings.buffer_s > 0 or not settings.drain_timeout_s >= 0:
            raise ValueError("--buffer-s must be positive and --drain-timeout-s not negative")
        source = source_from_args(args)
        processor = CaptureProcessor(settings.config())
    except (InvalidId, AudioInputError, MicrophoneError, VADUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = AgentOptions(
        session=session,
        buffer_s=settings.buffer_s,
        live=not (args.file and args.fast),
        drain_timeout_s=settings.drain_timeout_s,
    )
    meter = TerminalMeter(force=False) if not args.no_meter else None

    async def main(settings: BusSettings) -> int:
        agent = CaptureAgent(settings, options, source, processor, meter=meter)
        return await agent.run(handle_signals=True)

    try:
        return run_async(args, main)
    finally:
        source.close()


def format_chunk(chunk: Chunk) -> str:
    flags = ("S" if chunk.utt_start else "-") + ("E" if chunk.utt_end else "-")
    return (
        f"seq={chunk.seq} utt={chunk.utterance} {flags} offset={chunk.offset} "
        f"samples={chunk.samples} vad={chunk.vad} p={chunk.speech_prob:.2f} "
        f"t={chunk.capture_start:.3f}..{chunk.capture_end:.3f}"
    )


def _list_devices() -> int:
    from capture_agent.portaudio import print_devices
    from capture_agent.sources import MicrophoneError, list_devices

    try:
        devices = list_devices()
    except MicrophoneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return print_devices(devices, "no input devices found")


def cmd_capture(args: argparse.Namespace) -> int:
    if args.list_devices:
        return _list_devices()
    if not args.dry_run:
        return run_publishing(args)

    def show(chunk: Chunk) -> None:
        print(format_chunk(chunk), flush=True)

    return run_capture(args, show)


def register(commands: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    capture = commands.add_parser(
        "capture",
        help="microphone or file -> VAD -> audio chunks",
        description="Capture audio, detect speech, cut it into chunk events and publish them "
        "as one session of a room (or print them with --dry-run). Stops cleanly on end of "
        "input, Ctrl-C or SIGTERM: the last utterance is flushed and the session ended.",
    )
    add_capture_arguments(capture)
    add_session_arguments(capture)
    capture.add_argument(
        "--dry-run", action="store_true", help="print one line per chunk instead of publishing"
    )
    add_bus_options(capture)
    capture.set_defaults(func=cmd_capture)

    bench_capture = bench.add_parser(
        "capture",
        help="CPU per second of audio and memory of the capture agent, per VAD backend",
    )
    bench_capture.add_argument("--file", help="audio file (default: the LJ Speech continuous clip)")
    bench_capture.add_argument(
        "--backends",
        default="lite,torch,torch-onnx",
        help="comma-separated VAD backends (lite,torch,torch-onnx)",
    )
    bench_capture.add_argument("--repeats", type=int, default=1, help="passes to average")
    bench_capture.add_argument("--json", help="write the results to this JSON file")
    bench_capture.add_argument(
        "--redis-url", default=os.environ.get("S2ST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="publish every chunk there, as the agent does, into a scratch stream deleted "
        "afterwards (S2ST_REDIS_URL)",
    )
    bench_capture.add_argument(
        "--no-publish", action="store_true", help="VAD and chunking only, no Redis"
    )

    def _bench(args: argparse.Namespace) -> int:
        from capture_agent.bench import run_bench

        return run_bench(args)

    bench_capture.set_defaults(func=_bench)
