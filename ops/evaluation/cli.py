"""`s2st eval`: quality and latency on a speech set, through the real stack.

It starts its own stack (as `s2st up`: Redis, one worker of each stage) under a key prefix of
its own, or uses the workers already running (``--running``); speaks every clip at real-time
pace through a capture agent into its own session, hears it through a player, then scores
what came out (see docs/evaluation.md) and writes ``--json`` with a Markdown report and a
plot beside it. Clips whose source language the configured ASR model cannot hear (an
English-only model and a French clip) run in a second pass with the multilingual ``base``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ops.evaluation.manifest import (
    ManifestError,
    Selected,
    Skipped,
    default_manifest,
    load,
    select,
)
from ops.evaluation.run import ClipRun, ClipRunner
from ops.stack import Stack, StackError, add_stack_options, stack_from_args
from ops.stackconfig import ConfigError
from ops.supervisor import Supervisor

MULTILINGUAL = "base"


def register(commands: Any, bench: Any) -> None:
    tts_bench = bench.choices.get("tts")  # registered by workers/tts/cli.py, if built
    if tts_bench is not None:
        tts_bench.set_defaults(intelligibility_command=_tts_intelligibility)
    p = commands.add_parser(
        "eval",
        help="quality (WER, BLEU, chrF, ASR-BLEU) and latency (StartOffset, EndOffset, AL, "
        "LAAL, LongYAAL, StreamLAAL, per segment and per stage) on a speech set, through the "
        "real stack",
        description="Speak every clip of a manifest at real-time pace through the real bus "
        "and workers, hear the translated speech through a player, and score it the way "
        "SimulEval does (computation-aware). Writes --json, a Markdown report and a PNG plot "
        "beside it, and the speech each player heard under --out.",
    )
    p.add_argument("--manifest", help="JSON lines of clips (default: the development set, "
                   "../shared/data/speech/manifest.jsonl or $S2ST_SPEECH_DIR)")
    p.add_argument("--target", help="target language of every clip (default: es for English "
                   "sources, en for the others)")
    p.add_argument("--clips", default="", help="comma-separated clip ids or patterns "
                   "(fleurs_en_*) to run; default all that can be scored")
    p.add_argument("--limit", type=int, help="at most this many clips")
    p.add_argument("--max-duration", type=float, metavar="S", help="leave out longer clips")
    p.add_argument("--parallel", type=int, default=2, help="clips spoken at once (2)")
    p.add_argument("--asr-model", help="ASR model for every clip (default: the profile's; "
                   f"clips an English-only model cannot hear use {MULTILINGUAL})")
    p.add_argument("--json", default="bench-results/eval.json",
                   help="results (the report .md and plot .png are written beside it)")
    p.add_argument("--out", help="folder for the played speech (default: beside --json)")
    p.add_argument("--no-asr-bleu", action="store_true",
                   help="skip transcribing the translated speech back (no ASR-BLEU)")
    p.add_argument("--running", action="store_true",
                   help="use the workers already running on the configured Redis and prefix")
    p.add_argument("--keep", action="store_true",
                   help="keep the eval's streams in Redis (default: deleted at the end)")
    add_stack_options(p)
    p.set_defaults(func=cmd_eval)
    from ops.evaluation import scale

    scale.register(bench)


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        manifest = Path(args.manifest) if args.manifest else default_manifest()
        patterns = [p.strip() for p in args.clips.split(",") if p.strip()]
        chosen, skipped = select(load(manifest), target=args.target, patterns=patterns,
                                 limit=args.limit, max_duration_s=args.max_duration)
        if args.parallel < 1:
            raise ManifestError("--parallel must be at least 1")
    except ManifestError as exc:
        print(f"s2st eval: {exc}", file=sys.stderr)
        return 2
    supervisor = Supervisor()
    try:
        stack = stack_from_args(args, supervisor)
    except ConfigError as exc:
        print(f"s2st eval: {exc}", file=sys.stderr)
        return 2
    from bus.logs import configure_logging

    configure_logging(stack.settings.log_format, "warning")  # the players' logs stay quiet
    evaluation = Evaluation(args, stack, supervisor, manifest, chosen, skipped)
    with supervisor.in_charge():
        return evaluation.run()


class Evaluation:
    def __init__(self, args: argparse.Namespace, stack: Stack, supervisor: Supervisor,
                 manifest: Path, chosen: list[Selected], skipped: list[Any]) -> None:
        self.args = args
        self.stack = stack
        self.sup = supervisor
        self.manifest = manifest
        self.chosen = chosen
        self.skipped = skipped
        self.json_path = Path(args.json)
        self.out_dir = Path(args.out) if args.out else self.json_path.with_suffix("")
        self.run_id = "ev" + uuid.uuid4().hex[:6]
        self.profile_env = {**stack.config.profile_env(stack.profile),
                            **{k: v for k, v in os.environ.items() if k.startswith("S2ST_")}}
        self.settings = stack.settings  # as configured (each pass gets a prefix of its own)
        self.passes_done: list[str] = []

    def say(self, text: str) -> None:
        self.sup.say(text, "eval")

    def model_for(self, selected: Selected) -> str:
        model = self.args.asr_model or self.profile_env.get("S2ST_ASR_MODEL", "tiny.en")
        if model.endswith(".en") and selected.clip.language != "en":
            return MULTILINGUAL
        return model

    def _routable(self) -> None:
        """Leave out the clips the MT backends of this stack cannot translate (no Apertium
        pair offline, for instance): they would only measure a dead letter."""
        if self.args.running:
            return
        try:
            from workers.mt.config import MTSettings, build_router

            router = build_router(MTSettings.from_env(self.profile_env))
        except Exception:  # MT not installed here: let the workers decide
            return
        backends = self.profile_env.get("S2ST_MT_BACKENDS", "*=apertium")
        try:
            kept = []
            for s in self.chosen:
                try:
                    ok = router.supports(s.clip.language, s.target)
                except Exception:  # a model backend that cannot load
                    ok = True
                if ok:
                    kept.append(s)
                else:
                    self.skipped.append(Skipped(
                        s.clip.id, f"no MT route {s.clip.language}->{s.target} with {backends}"))
            self.chosen = kept
        finally:
            router.close()

    def run(self) -> int:
        self._routable()
        if not self.chosen:
            self.say("no clip can be translated with these MT backends: "
                     + "; ".join(f"{s.id} ({s.why})" for s in self.skipped[:3]))
            return 2
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.say(f"{len(self.chosen)} clips of {self.manifest} "
                 f"({sum(s.clip.duration_s for s in self.chosen):.0f} s of speech), "
                 f"{len(self.skipped)} left out, {self.args.parallel} at a time")
        runs: list[ClipRun] = []
        passes: dict[str, list[Selected]] = {}
        for s in self.chosen:
            passes.setdefault("running" if self.args.running else self.model_for(s), []).append(s)
        failed: str | None = None
        for model, clips in passes.items():
            try:
                runs += self._pass(model, clips)
            except (StackError, ConfigError) as exc:
                failed = str(exc)
                break
            if self.sup.stop_requested.is_set():
                break
        if failed or not runs:
            self.say(f"cannot run: {failed or 'interrupted'}")
            return 2 if failed else 130
        return self._score(runs, started)

    # -- one stack per ASR model -----------------------------------------------------
    def _pass(self, model: str, clips: list[Selected]) -> list[ClipRun]:
        stack = self.stack
        if self.args.running:
            settings = self.settings

            def running_env() -> dict[str, str]:
                return {**os.environ, "S2ST_REDIS_URL": settings.redis_url,
                        "S2ST_KEY_PREFIX": settings.key_prefix,
                        "S2ST_REDIS_CLUSTER": "1" if settings.redis_cluster else "0"}

            return asyncio.run(self._clips(settings, clips, running_env))
        prefix = f"{self.settings.key_prefix}-{self.run_id}-{len(self.passes_done)}"
        stack.settings = self.settings.model_copy(update={"key_prefix": prefix})
        stack.base_env = {"S2ST_LOG_LEVEL": "warning", **os.environ, "S2ST_ASR_MODEL": model}
        self.passes_done.append(model)
        try:
            stack.start()
            self.say(stack.describe())
            self.say("loading the models...")
            if not stack.wait_ready():
                raise StackError("the workers did not become ready (see above)")
            return asyncio.run(self._clips(stack.settings, clips, stack.env))
        finally:
            codes = self.sup.stop()
            if any(c != 0 for c in codes.values()):
                self.say("stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()))

    async def _clips(self, settings: Any, clips: list[Selected],
                     env: Callable[[], dict[str, str]]) -> list[ClipRun]:
        from bus.connection import connect
        from bus.testing import delete_prefix

        client = await connect(settings)
        try:
            runner = ClipRunner(client, settings.keys, self.sup, env, run_id=self.run_id,
                                out_dir=self.out_dir, parallel=self.args.parallel,
                                say=self.say)
            runs = await runner.run_all(clips)
            for run in runs:
                self.say(f"{run.clip_id}: {len(run.transcripts)} committed transcripts, "
                         f"{len(run.translations)} translations, {len(run.pieces)} pieces "
                         "played" + (f"; {run.error}" if run.error else ""))
            return runs
        finally:
            if not self.args.keep and not self.args.running:
                with contextlib.suppress(Exception):
                    await delete_prefix(client, settings.key_prefix)
            await client.aclose()

    # -- scores ------------------------------------------------------------------------
    def _score(self, runs: list[ClipRun], started: str) -> int:
        from ops.evaluation.report import write_all
        from ops.evaluation.score import score_clips

        transcribe = None
        if not self.args.no_asr_bleu:
            from ops.evaluation.quality import BackTranscriber

            self.say("transcribing the translated speech back (Whisper base) for ASR-BLEU")
            transcribe = BackTranscriber().hear  # with word times: they time the output
        t = time.monotonic()
        scores = score_clips(runs, transcribe)
        env = self.profile_env
        meta = {
            "command": "s2st " + " ".join(shlex.quote(a) for a in sys.argv[1:])
            if Path(sys.argv[0]).name in ("s2st", "cli.py") else "s2st eval",
            "started": started, "manifest": str(self.manifest), "parallel": self.args.parallel,
            "asr_models": ", ".join(sorted({self._model_of(r) for r in runs})),
            "mt_backends": env.get("S2ST_MT_BACKENDS", "*=apertium"),
            "tts_backends": env.get("S2ST_TTS_BACKENDS", "default"),
            "audio_s": sum(r.source_s for r in runs), "cpus": os.cpu_count(),
            "interrupted": self.sup.stop_requested.is_set(),
        }
        data, md, png = write_all(self.json_path, scores, self.skipped, meta)
        self.say(f"scored in {time.monotonic() - t:.0f} s")
        for line in _headline(data):
            self.say(line)
        self.say(f"wrote {self.json_path}, {md}" + (f", {png}" if png else ""))
        return 1 if any(r.error for r in runs) or meta["interrupted"] else 0

    def _model_of(self, run: ClipRun) -> str:
        return "running workers" if self.args.running else self.model_for(run.selected)


def _headline(data: dict[str, Any]) -> Sequence[str]:
    def f(value: Any, scale: float = 1.0, unit: str = "") -> str:
        return "-" if value is None else f"{value * scale:.2f}{unit}"

    seg = data["segment_latency_s"]
    lf = data["long_form_segments"]
    timing = data["word_timing"]
    return [
        f"WER {f(data['wer'], 100, ' %')}  BLEU {f(data['bleu'])}  chrF {f(data['chrf'])}  "
        f"ASR-BLEU {f(data['asr_bleu'])}",
        f"StartOffset {f(data['start_offset_s'], unit=' s')}  EndOffset "
        f"{f(data['end_offset_s'], unit=' s')}  AL {f(data['al_s'], unit=' s')}  LAAL "
        f"{f(data['laal_s'], unit=' s')}",
        f"long-form: LongYAAL {f(data['long_yaal_s'], unit=' s')}  StreamLAAL "
        f"{f(data['stream_laal_s'], unit=' s')}  ({lf['long_yaal_scored']}/{lf['reference']} "
        f"and {lf['stream_laal_scored']}/{lf['reference']} reference segments scored; word "
        f"onsets {timing['measured']}/{timing['words']} heard, the rest by characters)",
        f"segment latency p50 {f(seg['p50'], unit=' s')}  p95 {f(seg['p95'], unit=' s')}  "
        f"max {f(seg['max'], unit=' s')}  (n={seg['count']})",
    ]


def _tts_intelligibility(args: argparse.Namespace) -> int:
    from ops.evaluation.tts_intelligibility import command

    return command(args)
