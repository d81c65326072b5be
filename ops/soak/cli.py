"""`s2st bench soak`: hours of real-time speech through the real stack, with faults.

See ops/soak/run.py for what runs and docs/evaluation.md ("s2st bench soak") for how to read
the JSON and the plot. Exit status: 0 when nothing was lost, duplicated, out of order or hung
and every fault was applied; 1 otherwise; 2 for bad options or a stack that cannot start;
130 when interrupted (the partial report is written all the same).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ops.soak.schedule import parse_duration, parse_faults
from ops.stackconfig import STAGES

DEFAULT_WORKERS = 2  # per stage: a killed or paused worker's streams have somewhere to go


def register(commands: Any, bench: Any) -> None:
    b = bench.add_parser(
        "soak",
        help="soak and chaos: rooms x speakers x languages of real-time speech for a long "
        "time, with workers killed and paused, Redis restarted, capture links cut; reports "
        "lost, duplicated, hung, latency per window and memory over time",
        description="Start a Redis with AOF of its own and the stack on it (2 workers per "
        "stage unless --asr/--mt/--tts say otherwise), speak English clips of the development "
        "set at real-time pace into ROOMS x SPEAKERS capture agents (a new session per clip) "
        "for --duration, translated into --langs and heard by a player per room and language, "
        "while the --faults are applied. Then account every session from the streams. Writes "
        "--json and a PNG beside it. Exit status 1 if anything was lost, duplicated, out of "
        "order or hung, or a fault could not be applied.",
        epilog="faults: none | cycle (default: one every --fault-every, in turn kill, stop, "
        "redis, link) | KIND[@STAGE]:TIME,... with KIND kill, stop (stage asr, mt or tts; in "
        "turn when left out), redis, link; e.g. kill:60s,stop@tts:90s,redis:2m,link:150",
    )
    b.add_argument("--duration", default="30m", help="how long the speakers speak (30m; "
                   "90, 90s, 1m30s, 2h)")
    b.add_argument("--rooms", type=int, default=1, help="rooms (1)")
    b.add_argument("--speakers", type=int, default=1, help="speakers per room, each a capture "
                   "agent speaking one clip after another (1)")
    b.add_argument("--langs", default="es", help="target languages of every room, comma-"
                   "separated (es; Apertium offline also has ca)")
    b.add_argument("--faults", default="cycle", help="the fault schedule (see below)")
    b.add_argument("--fault-every", default="3m", help="with --faults cycle: the period (3m)")
    b.add_argument("--stop-s", type=float, help="how long a stop fault pauses a worker "
                   "(default: twice the lease TTL, at least the TTL + 2 s)")
    b.add_argument("--link-s", type=float, default=4.0, help="how long a link fault cuts a "
                   "capture agent off (4)")
    b.add_argument("--redis-down-s", type=float, default=1.0,
                   help="how long Redis stays down in a redis fault (1)")
    b.add_argument("--window", default="5m", help="latency window (5m)")
    b.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period (10)")
    b.add_argument("--end-wait", type=float, default=120.0, metavar="S",
                   help="a session whose end marker has not reached every speech stream this "
                   "long after its capture ended is hung (120)")
    b.add_argument("--retention-s", type=float, default=600.0,
                   help="S2ST_RETENTION_S of the workers: short enough that the retention "
                   "sweep runs within a long soak (600)")
    b.add_argument("--manifest", help="clips (default: the development set's manifest)")
    b.add_argument("--clips", default="", help="comma-separated clip ids or patterns (default: "
                   "every English clip of at most --max-clip-s)")
    b.add_argument("--max-clip-s", type=float, default=30.0, help="leave out longer clips (30)")
    b.add_argument("--json", default="bench-results/soak.json",
                   help="the report (the PNG is written beside it)")
    b.add_argument("--keep", action="store_true",
                   help="keep the run folder (Redis AOF, players' WAVs) under --state-dir")
    from ops.stack import add_stack_options

    add_stack_options(b)
    b.set_defaults(func=cmd_soak)


def _clips(args: argparse.Namespace) -> list[Any]:
    from ops.evaluation.manifest import ManifestError, default_manifest, load

    clips = load(Path(args.manifest) if args.manifest else default_manifest())
    patterns = [p.strip() for p in args.clips.split(",") if p.strip()]
    chosen = [c for c in clips
              if c.language == "en" and c.audio.is_file() and 0 < c.duration_s <= args.max_clip_s
              and (not patterns or any(fnmatch.fnmatchcase(c.id, p) for p in patterns))]
    if not chosen:
        raise ManifestError("no English clip of at most --max-clip-s seconds with an audio "
                            "file matches" + (f" {args.clips}" if patterns else ""))
    return chosen


def cmd_soak(args: argparse.Namespace) -> int:
    from bus.ids import InvalidId, check_lang
    from bus.logs import configure_logging
    from ops.evaluation.manifest import ManifestError
    from ops.stack import StackError, stack_from_args
    from ops.stackconfig import ConfigError
    from ops.supervisor import Supervisor

    try:
        duration = parse_duration(args.duration, "--duration")
        window = parse_duration(args.window, "--window")
        every = parse_duration(args.fault_every, "--fault-every")
        if duration <= 0 or window <= 0:
            raise ValueError("--duration and --window must be positive")
        if args.rooms < 1 or args.speakers < 1:
            raise ValueError("--rooms and --speakers must be at least 1")
        if not args.sample_s > 0 or not args.end_wait > 0 or not args.link_s > 0:
            raise ValueError("--sample-s, --end-wait and --link-s must be positive")
        langs = [check_lang(x.strip()) for x in args.langs.split(",") if x.strip()]
        if not langs or "en" in langs:
            raise ValueError("--langs: one or more target languages other than en")
        faults = parse_faults(args.faults, duration, every)
        clips = _clips(args)
    except (ValueError, InvalidId, ManifestError) as exc:
        print(f"s2st bench soak: {exc}", file=sys.stderr)
        return 2
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".log")
    log = log_path.open("w", encoding="utf-8")
    supervisor = Supervisor(out=log)  # the children's output goes to the log

    def say(text: str) -> None:
        for line in text.splitlines():
            print(f"soak   | {line}", flush=True)
        supervisor.say(text, "soak")

    try:
        workers = {s: getattr(args, s) if getattr(args, s) is not None else DEFAULT_WORKERS
                   for s in STAGES}
        for s in STAGES:
            setattr(args, s, workers[s])
        stack = stack_from_args(args, supervisor)
    except ConfigError as exc:
        print(f"s2st bench soak: {exc}", file=sys.stderr)
        log.close()
        return 2
    from ops.soak.report import build_report, plot, summary_lines
    from ops.soak.run import Soak, SoakConfig

    configure_logging(stack.settings.log_format, "warning")
    cfg = SoakConfig(duration_s=duration, rooms=args.rooms, speakers=args.speakers, langs=langs,
                     clips=clips, faults=faults, json_path=out, window_s=window,
                     sample_s=args.sample_s, end_wait_s=args.end_wait, stop_s=args.stop_s,
                     link_s=args.link_s, redis_down_s=args.redis_down_s,
                     retention_s=args.retention_s, workers=workers, keep=args.keep)
    soak = Soak(cfg, stack, supervisor, say)
    say(f"run folder {soak.run_dir}; the processes' output goes to {log_path}")
    command = "s2st bench soak " + " ".join(sys.argv[3:])
    began = time.monotonic()
    with supervisor.signals_handled():
        try:
            try:
                soak.start()
            except StackError as exc:
                say(f"cannot start: {exc}")
                soak.teardown()
                soak.cleanup_files(args.keep)
                log.close()
                return 130 if supervisor.stop_requested.is_set() else 2
            asyncio.run(soak.main())
            say("stopping: players, capture agents, workers (they drain), Redis")
        except BaseException:
            for pgid in list(soak.stopped):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGCONT)
            supervisor.kill_all()
            for proxy in soak.proxies.values():
                proxy.close()
            log.close()
            raise
        soak.teardown()
    soak.account()
    from ops.soak.faults import after_run

    after_run(soak)
    report = build_report(soak, command)
    report["seconds"] = round(time.monotonic() - began, 1)
    report["log"] = str(log_path)
    png = plot(out.with_suffix(".png"), report)
    report["plot"] = str(png)
    out.write_text(json.dumps(report, indent=1) + "\n")
    for line in summary_lines(report):
        say(line)
    if report["failures"]:
        say("FAILED:")
        for why in report["failures"]:
            say(f"  {why}")
    say(f"wrote {out} and {png}")
    soak.cleanup_files(args.keep or not report["ok"])
    log.close()
    if soak.interrupted:
        return 130
    return 0 if report["ok"] else 1
