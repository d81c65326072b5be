"""`s2st play` (a room's translated speech to a device or a WAV file) and `s2st web`.

Heavy or optional imports (pyaudio, starlette, uvicorn) happen inside the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bus.command import add_settings_flags, run_async, settings_from_args
from bus.settings import BusSettings, add_bus_options
from player_agent.settings import PlaySettings, WebSettings


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "play",
        help="play a room's translated speech in one language (device or WAV file)",
        description="Follow the room's speech stream of one language with XREAD (every "
        "listener hears everything; nothing is kept on the server), order the pieces by "
        "session and sequence in a small jitter buffer, never play one twice, and play them "
        "to a sound device or write them to a WAV file aligned with the source timeline. "
        "Reports latency p50/p95/max at the end (and as Prometheus metrics).",
    )
    p.add_argument("--room", help="room id")
    p.add_argument("--lang", help="language to listen to, e.g. es")
    p.add_argument("--session", help="only this session's speech (default: every speaker)")
    p.add_argument("--device", help="output device: index or name fragment (default device)")
    p.add_argument("--list-devices", action="store_true", help="list output devices and exit")
    p.add_argument("--out", help="write a WAV file instead of playing")
    p.add_argument("--fast", action="store_true",
                   help="with --out: write as fast as pieces come (no real-time pacing)")
    p.add_argument("--from", dest="start", default="$",
                   help="where to start: live ($, default), start, an entry id, a time ago "
                   "(90s, 5m), epoch seconds or an ISO time")
    p.add_argument("--until-ended", action="store_true",
                   help="exit once the room has no active session and everything was played "
                   "(exit status 4 if it gives up waiting: see --end-wait, --start-wait)")
    p.add_argument("--json", help="write the latency summary and counts here at the end")
    add_settings_flags(p, PlaySettings, title="player (each flag overrides its S2ST_PLAY_* "
                       "variable)")
    add_bus_options(p)
    p.set_defaults(func=cmd_play)

    w = commands.add_parser(
        "web",
        help="web server with a live page per room (captions, translated audio, latency)",
        description="Serve /room/<room>?lang=<lang>: live captions of the source and of the "
        "translation, the translated speech played in the browser, speakers and latency; and "
        "/room/<room>/speak: a browser microphone into the room through the capture pipeline; "
        "/admin: the operator view (rooms, sessions, workers and lag, latency, dead letters; "
        "create rooms, issue links). "
        "With S2ST_WEB_SECRET set, every page and websocket needs a room token "
        "(s2st room token); without it the server only starts on a loopback address, or "
        "with --no-auth.",
    )
    w.add_argument("--no-auth", action="store_true",
                   help="serve every room to anyone who can reach the server, without tokens "
                   "(local development; S2ST_WEB_SECRET is ignored)")
    add_settings_flags(w, WebSettings, title="web server (each flag overrides its S2ST_WEB_* "
                       "variable)")
    add_bus_options(w)
    w.set_defaults(func=cmd_web)


def _ms(value: float, name: str) -> float:
    if value < 0 or value > 60_000:
        raise ValueError(f"{name} must be within 0..60000 ms, got {value}")
    return value / 1000.0


def cmd_play(args: argparse.Namespace) -> int:
    from capture_agent.portaudio import print_devices
    from player_agent.outputs import OutputError, list_output_devices

    if args.list_devices:
        try:
            devices = list_output_devices()
        except OutputError as exc:
            print(f"s2st play: {exc}", file=sys.stderr)
            return 2
        return print_devices(devices, "no audio output devices found")
    if not args.room or not args.lang:
        print("s2st play: --room and --lang are required", file=sys.stderr)
        return 2
    play = settings_from_args(PlaySettings, args, program="s2st play")
    try:
        config = _player_config(args, play)
    except ValueError as exc:
        print(f"s2st play: {exc}", file=sys.stderr)
        return 2

    async def main(settings: BusSettings) -> int:
        return await _play(args, settings, config, play.rate)

    return run_async(args, main)


def _player_config(args: argparse.Namespace, play: PlaySettings) -> Any:
    from player_agent.player import PlayerConfig
    from player_agent.subscriber import parse_position

    return PlayerConfig(
        room=args.room, lang=args.lang, position=parse_position(args.start),
        hold_s=_ms(play.jitter_ms, "--jitter-ms"), deadline_s=_ms(play.deadline_ms, "--deadline-ms"),
        until_ended=args.until_ended, session=args.session,
        end_wait_s=_seconds(play.end_wait, "--end-wait"),
        start_wait_s=_seconds(play.start_wait, "--start-wait"),
    )


def _seconds(value: float, name: str) -> float:
    if not 0 < value <= 86_400:
        raise ValueError(f"{name} must be within 0..86400 s, got {value}")
    return value


async def _play(args: argparse.Namespace, settings: BusSettings, config: Any, rate: int) -> int:
    from bus.connection import connect
    from bus.metrics import serve_metrics
    from player_agent.outputs import OutputError, PyAudioSink, WavSink
    from player_agent.player import Player, UnknownRoom
    from player_agent.subscriber import parse_position

    try:
        sink = (WavSink(args.out, rate=rate, paced=not args.fast) if args.out
                else PyAudioSink(args.device, rate=rate))
    except OutputError as exc:
        print(f"s2st play: {exc}", file=sys.stderr)
        return 2
    client = await connect(settings)
    # a time ago (--from 90s) again, on the clock now measured against Redis's (bus/clock.py)
    config.position = parse_position(args.start)
    if settings.metrics_port is not None:
        print(f"metrics on :{serve_metrics(settings.metrics_port)}/metrics", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    player = Player(client, settings.keys, config, sink)
    try:
        report = await player.run(stop)
    except UnknownRoom as exc:
        print(f"s2st play: {exc}", file=sys.stderr)
        return 2
    except (OutputError, OSError) as exc:
        print(f"s2st play: the output failed: {exc}", file=sys.stderr)
        return 1
    finally:
        sink.close()
        await client.aclose()
    print(report.text())
    if args.out:
        print(f"wrote {args.out}")
    if args.json:
        await asyncio.to_thread(_write_summary, Path(args.json), config, report)
    if not report.finished:
        for why in report.unfinished:
            print(f"s2st play: gave up: {why}", file=sys.stderr)
        return 4
    return 0


def _write_summary(path: Path, config: Any, report: Any) -> None:
    from player_agent.latency import KINDS

    summary = {
        "room": config.room, "lang": config.lang,
        "counts": vars(report.stats) | {"malformed": report.malformed},
        "latency": {k: report.latency.summary(k).as_dict() for k in KINDS},
        "finished": report.finished, "unfinished": report.unfinished,
    }
    path.write_text(json.dumps(summary, indent=2))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def web_secret(no_auth: bool, host: str) -> tuple[bytes | None, str | None]:
    """The secret pages are checked with (None: no tokens), or why the server may not start."""
    from player_agent.web.tokens import SECRET_ENV, SecretError, check_secret

    if no_auth:
        return None, None
    value = os.environ.get(SECRET_ENV)
    if value:
        try:
            return check_secret(value), None
        except SecretError as exc:
            return None, str(exc)
    if is_loopback(host):
        return None, None
    return None, (f"refusing to serve {host} without access tokens: set {SECRET_ENV} "
                  "(then hand out links made by `s2st room token`), or give --no-auth to let "
                  "anyone who can reach it open every room")


def cmd_web(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from player_agent.web.app import create_app
    except ImportError as exc:
        print(f"s2st web: needs the web extra (pip install 's2st[web]'): {exc}", file=sys.stderr)
        return 2
    web = settings_from_args(WebSettings, args, program="s2st web")
    secret, refusal = web_secret(args.no_auth, web.host)
    if refusal is None and not 0 < web.speaker_grace <= 3600:
        refusal = f"--speaker-grace must be more than 0 and at most 3600 s, got {web.speaker_grace}"
    if refusal is None and bool(web.cert) != bool(web.key):
        refusal = "give both --cert and --key, or neither"
    for path in (web.cert, web.key):
        if refusal is None and path and not Path(path).is_file():
            refusal = f"no such file: {path}"
    if refusal is not None:
        print(f"s2st web: {refusal}", file=sys.stderr)
        return 2

    async def main(settings: BusSettings) -> int:
        from bus.logs import get_logger

        log = get_logger("player.web")
        scheme = "https" if web.cert else "http"
        where = f"{scheme}://{web.host}:{web.port}"
        if secret is None:
            log.warning("ACCESS TOKENS OFF: anyone who can reach the server opens every room",
                        url=where, why="--no-auth" if args.no_auth else "no S2ST_WEB_SECRET, "
                        "loopback only")
        else:
            log.info("access tokens required (s2st room token)", url=where)
            if scheme == "http" and not is_loopback(web.host):
                log.warning("tokens and audio travel in clear text: serve HTTPS (--cert/--key) "
                            "or put a TLS proxy in front", url=where)
        app = create_app(settings, secret=secret, speaker_grace_s=web.speaker_grace)
        server = uvicorn.Server(uvicorn.Config(app, host=web.host, port=web.port,
                                               log_level=settings.log_level, lifespan="on",
                                               ssl_certfile=web.cert, ssl_keyfile=web.key))
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler that was
        # there before: make that one a no-op so a clean stop exits 0 like the workers
        signal.signal(signal.SIGTERM, lambda *_: None)
        await server.serve()
        return 0

    return run_async(args, main)
