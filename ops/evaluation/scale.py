"""`s2st bench scale`: how many sessions a stack sustains, with real models and bus alone.

- **Real models**: ``N`` concurrent English->Spanish sessions through the configured stack
  (each the first ``--clip-s`` seconds of the LJ Speech continuous clip, spoken at real-time
  pace by a capture agent and heard by a player), ``N`` = 1, 2, ... until the segment-latency
  p95 passes ``--p95-limit``. The largest ``N`` within the limit is what the stack sustains.
- **Bus alone**: the no-op relay stage chained three times (as ``s2st bench bus``) with 1, 2
  and 4 worker processes per stage: events/s through the chain and per-hop latency.

Writes ``--json`` and a PNG of both curves beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ops.evaluation.latency import stats
from ops.evaluation.manifest import Clip, ManifestError, Selected, default_manifest, load
from ops.stack import Stack, StackError, add_stack_options, stack_from_args
from ops.stackconfig import ConfigError
from ops.supervisor import Supervisor

CLIP = "ljspeech_LJ001-0001_to_0032_continuous"


def register(bench: Any) -> None:
    b = bench.add_parser(
        "scale",
        help="concurrent real-time sessions a stack sustains (p95 limit), and the bus alone "
        "with 1, 2, 4 workers per stage",
        description="Real models: N concurrent English->Spanish sessions through the stack, "
        "N = 1, 2, ... until the segment-latency p95 passes the limit. Bus alone: the relay "
        "stage chained three times with 1, 2 and 4 workers per stage. JSON and a PNG.",
    )
    b.add_argument("--sessions", default="1,2,3,4,6,8", help="N values to try, in order, "
                   "until the p95 limit is passed")
    b.add_argument("--clip", help=f"the speech each session speaks (default: {CLIP})")
    b.add_argument("--clip-s", type=float, default=60.0, help="seconds of it (60)")
    b.add_argument("--p95-limit", type=float, default=3.0, help="segment latency p95 (3 s)")
    b.add_argument("--bus-workers", default="1,2,4", help="relay workers per stage to try")
    b.add_argument("--bus-sessions", type=int, default=100, help="sessions of the bus run")
    b.add_argument("--bus-events", type=int, default=20000, help="events of the bus run")
    b.add_argument("--bus-rate", type=float, default=2000.0,
                   help="events/s offered for the bus latency run (0: skip it)")
    b.add_argument("--skip-models", action="store_true", help="only the bus curve")
    b.add_argument("--skip-bus", action="store_true", help="only the real-model curve")
    b.add_argument("--json", default="bench-results/scale.json")
    add_stack_options(b)
    b.set_defaults(func=cmd_scale)


def cmd_scale(args: argparse.Namespace) -> int:
    try:
        ns = _ints(args.sessions, "--sessions")
        workers = _ints(args.bus_workers, "--bus-workers")
        source = source_clip(args.clip)
    except (ValueError, ManifestError) as exc:
        print(f"s2st bench scale: {exc}", file=sys.stderr)
        return 2
    from bus.logs import configure_logging

    supervisor = Supervisor()
    try:
        stack = stack_from_args(args, supervisor)
    except ConfigError as exc:
        print(f"s2st bench scale: {exc}", file=sys.stderr)
        return 2
    configure_logging(stack.settings.log_format, "warning")
    out = Path(args.json)
    report: dict[str, Any] = {
        "bench": "scale", "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "s2st bench scale " + " ".join(sys.argv[3:]),
    }
    with supervisor.in_charge():
        try:
            if not args.skip_models:
                clip = _cut(source, args.clip_s, out.with_suffix("") / "clip.wav")
                report["models"] = model_ramp(stack, supervisor, clip, ns, args.p95_limit,
                                           out.with_suffix(""))
            if not args.skip_bus and not supervisor.stop_requested.is_set():
                report["bus"] = _bus(stack, workers, args.bus_sessions, args.bus_events,
                                     args.bus_rate)
        except StackError as exc:
            print(f"s2st bench scale: cannot start: {exc}", file=sys.stderr)
            return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    png = _plot(out.with_suffix(".png"), report)
    report["plot"] = str(png) if png else None
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}" + (f" and {png}" if png else ""))
    return 130 if supervisor.stop_requested.is_set() else 0


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name}: comma-separated whole numbers expected, not {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{name}: at least one number, each at least 1")
    return values


def source_clip(path: str | None) -> Path:
    if path:
        if not Path(path).is_file():
            raise ManifestError(f"no such file: {path}")
        return Path(path)
    manifest = default_manifest()
    for clip in load(manifest):
        if clip.id == CLIP:
            return clip.audio
    raise ManifestError(f"{CLIP} is not in {manifest}; give --clip")


def _cut(source: Path, seconds: float, dest: Path) -> Path:
    """The first ``seconds`` of ``source`` as a 16 kHz WAV (the capture agent resamples)."""
    import soundfile

    info = soundfile.info(str(source))
    data, rate = soundfile.read(str(source), dtype="int16", frames=int(seconds * info.samplerate))
    dest.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(dest), data[: int(seconds * rate)], rate)
    return dest


# -- real models ---------------------------------------------------------------------------


def model_ramp(stack: Stack, sup: Supervisor, clip: Path, ns: list[int],
            limit: float, out_dir: Path) -> dict[str, Any]:
    from ops.evaluation.score import score_clips

    run_id = "sc" + uuid.uuid4().hex[:6]
    stack.settings = stack.settings.model_copy(
        update={"key_prefix": f"{stack.settings.key_prefix}-{run_id}"})
    stack.base_env = {"S2ST_LOG_LEVEL": "warning", **os.environ}
    steps: list[dict[str, Any]] = []
    sustained = 0
    try:
        stack.start()
        sup.say(stack.describe(), "scale")
        if not stack.wait_ready():
            raise StackError("the workers did not become ready")
        duration = _seconds(clip)
        for n in ns:
            clips = [Selected(Clip(f"n{n}-s{k}", clip, "en", duration, None, {}), "es")
                     for k in range(1, n + 1)]
            sup.say(f"{n} concurrent session(s) of {duration:.0f} s", "scale")
            t = time.monotonic()
            runs = asyncio.run(_run(stack, sup, clips, run_id, n, out_dir))
            scores = score_clips(runs, None)
            seg = stats([v for s in scores for v in s.latency.segment_latency_s])
            starts = [s.latency.start_offset_s for s in scores
                      if s.latency.start_offset_s is not None]
            step = {
                "sessions": n, "seconds": round(time.monotonic() - t, 1),
                "segment_latency_s": seg.as_dict(),
                "start_offset_s_max": max(starts) if starts else None,
                "segments": sum(1 for r in runs for p in r.pieces if p.part == 0),
                "errors": [r.error for r in runs if r.error],
            }
            steps.append(step)
            p95 = seg.p95
            sup.say(f"  segment latency p50 {_f(seg.p50)} p95 {_f(p95)} max {_f(seg.max)} s, "
                    f"{step['segments']} segments" + (f", errors: {step['errors']}"
                                                      if step["errors"] else ""), "scale")
            if p95 is None or p95 > limit or step["errors"] or sup.stop_requested.is_set():
                break
            sustained = n
    finally:
        sup.stop()
    env = stack.env() if stack.redis else {}
    return {"clip_s": _seconds(clip), "p95_limit_s": limit, "sustained_sessions": sustained,
            "workers": dict(stack.config.workers),
            "asr_model": env.get("S2ST_ASR_MODEL"), "tts_backends": env.get("S2ST_TTS_BACKENDS"),
            "steps": steps}


async def _run(stack: Stack, sup: Supervisor, clips: list[Selected], run_id: str,
               parallel: int, out_dir: Path) -> list[Any]:
    from bus.connection import connect
    from ops.evaluation.run import ClipRunner

    client = await connect(stack.settings)
    try:
        runner = ClipRunner(client, stack.keys, sup, stack.env, run_id=run_id,
                            out_dir=out_dir,
                            parallel=parallel, say=lambda _t: None)
        return await runner.run_all(clips)
    finally:
        await client.aclose()


def _seconds(path: Path) -> float:
    import soundfile

    return float(soundfile.info(str(path)).duration)


# -- the bus alone ---------------------------------------------------------------------------


def _bus(stack: Stack, workers: list[int], sessions: int, events: int,
         rate: float) -> dict[str, Any]:
    from bus.bench import run_bench
    from ops.redis_local import plan_redis

    plan = plan_redis(stack.settings.redis_url, stack.state_dir)
    started = None
    if plan.started_here:
        started = stack.supervisor.start("redis", plan.argv, tier=0)
        if not stack.supervisor.wait_until(lambda: _answers(plan.url), 30):
            raise StackError(f"{plan.origin} did not answer at {plan.url}")
    settings = stack.settings.model_copy(update={"redis_url": plan.url})
    runs = []
    try:
        for k in workers:
            stack.supervisor.say(f"bus: {sessions} sessions, {k} relay worker(s) per stage",
                                 "scale")
            report = asyncio.run(run_bench(settings, sessions=[sessions], events=events,
                                           rate=rate, duration=5.0, json_path=None,
                                           workers_per_stage=k))
            runs += report["runs"]
    finally:
        if started is not None:
            stack.supervisor.stop([started])
    return {"sessions": sessions, "events": events, "offered_events_per_s": rate, "runs": runs}


def _answers(url: str) -> bool:
    from ops.redis_local import answers

    return answers(url, 0.5)


# -- the plot ------------------------------------------------------------------------------------


def _plot(path: Path, report: dict[str, Any]) -> Path | None:
    models, bus = report.get("models"), report.get("bus")
    if not models and not bus:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if models and models["steps"]:
        xs = [s["sessions"] for s in models["steps"]]
        for key, style in (("p50", "o-"), ("p95", "s-"), ("max", "^:")):
            left.plot(xs, [s["segment_latency_s"][key] for s in models["steps"]], style,
                      label=f"segment latency {key}")
        left.axhline(models["p95_limit_s"], color="r", lw=0.8, ls="--",
                     label=f"p95 limit {models['p95_limit_s']:g} s")
        left.set_xlabel("concurrent real-time sessions (en->es)")
        left.set_ylabel("seconds")
        left.set_title(f"Real models: {models['sustained_sessions']} sustained")
        left.legend(fontsize=8)
    if bus and bus["runs"]:
        xs = [r["workers_per_stage"] for r in bus["runs"]]
        right.plot(xs, [r["events_per_s"] for r in bus["runs"]], "o-", label="events/s")
        right.set_xlabel("relay workers per stage")
        right.set_ylabel("events/s through the 3-stage chain")
        right.set_xticks(xs)
        right.set_title(f"Bus alone: {bus['sessions']} sessions")
        right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
