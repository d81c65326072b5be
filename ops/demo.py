"""`s2st demo`: one command from nothing to translated speech.

Starts the stack (ops/stack.py), speaks a bundled English sample (or a file, or the
microphone) into a room at real-time pace, writes the room's translated speech to a WAV file
(and to the speakers with --speakers), prints the captions as they are committed, then the
player's latency summary, and stops everything.  Ctrl-C ends the session early (a second
Ctrl-C stops at once).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis.exceptions

from bus.ids import InvalidId, check_id, check_lang
from ops.captions import Caption, CaptionFollower
from ops.stack import TIER_CLIENTS, Stack, StackError, add_stack_options, s2st_argv, stack_from_args
from ops.stackconfig import ConfigError
from ops.supervisor import Child, Supervisor

BUNDLED_SAMPLE = Path(__file__).resolve().parent / "samples" / "demo-en.flac"
SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "jfk_inaugural.flac"
SESSION_START_TIMEOUT_S = 30.0
# The player waits END_WAIT_S plus the session's length, once the room is quiet, for the end of
# the translated speech (then gives up, saying where it stopped: exit status 4). The demo's
# own bounds: the capture of a file, CAPTURE_FACTOR times its length plus a margin; the
# player after the capture, its bound plus the time to play, plus a margin.
END_WAIT_S = 30.0
CAPTURE_FACTOR = 3.0
MARGIN_S = 60.0
PLAYER_GAVE_UP = 4


def default_sample() -> Path:
    """The bundled sample (Piper's English voice), else the JFK clip of the dev speech set."""
    return BUNDLED_SAMPLE if BUNDLED_SAMPLE.exists() else SHARED_SAMPLE


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "demo",
        help="start the stack, translate an English sample into Spanish speech, show it all",
        description="Start the stack (as `s2st up`), capture a bundled English sample at "
        "real-time pace (or --file, or --mic), write the translated speech to a WAV file (and "
        "the speakers with --speakers), print captions as they are committed and the latency "
        "summary at the end, then stop everything. Ctrl-C ends early and still stops cleanly.",
    )
    src = p.add_argument_group("what is spoken")
    src.add_argument("--file", help="an English recording (default: the bundled sample)")
    src.add_argument("--mic", nargs="?", const="", metavar="DEVICE",
                     help="speak into a microphone instead (default device, or a name/index); "
                     "Ctrl-C ends the session")
    src.add_argument("--source-lang", default="en", help="language spoken (default en)")
    out = p.add_argument_group("what is heard")
    out.add_argument("--lang", default="es", help="target language (default es)")
    out.add_argument("--out", default="demo-es.wav", help="WAV file of the translated speech")
    out.add_argument("--speakers", action="store_true", help="also play it on the speakers")
    out.add_argument("--room", default="demo", help="room id (default demo)")
    add_stack_options(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        room = check_id(args.room, "room id")
        lang = check_lang(args.lang)
        source_lang = check_lang(args.source_lang, allow_auto=True)
    except InvalidId as exc:
        print(f"s2st demo: {exc}", file=sys.stderr)
        return 2
    if args.mic is not None and args.file:
        print("s2st demo: give --file or --mic, not both", file=sys.stderr)
        return 2
    source = None
    if args.mic is None:
        source = Path(args.file) if args.file else default_sample()
        if not source.is_file():
            print(f"s2st demo: no such file: {source}", file=sys.stderr)
            return 2
    supervisor = Supervisor()
    try:
        stack = stack_from_args(args, supervisor)
        stack.config = stack.config.with_room(room, [lang])
    except ConfigError as exc:
        print(f"s2st demo: {exc}", file=sys.stderr)
        return 2
    stack.base_env = {"S2ST_LOG_LEVEL": "warning", **stack.base_env}  # captions stay readable
    demo = Demo(stack, supervisor, room=room, lang=lang, source_lang=source_lang,
                source=source, mic=args.mic, out=Path(args.out), speakers=args.speakers)
    with supervisor.in_charge():
        return demo.run()


class Demo:
    def __init__(self, stack: Stack, supervisor: Supervisor, *, room: str, lang: str,
                 source_lang: str, source: Path | None, mic: str | None, out: Path,
                 speakers: bool) -> None:
        self.stack = stack
        self.sup = supervisor
        self.room = room
        self.lang = lang
        self.source_lang = source_lang
        self.source = source
        self.mic = mic
        self.out = out
        self.speakers = speakers
        self.session = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        self.summary_path = stack.state_dir / f"{self.session}-player.json"
        self.captions: CaptionFollower | None = None

    def say(self, text: str) -> None:
        self.sup.say(text, "demo")

    def run(self) -> int:
        try:
            self.stack.start()
        except Exception as exc:  # no Redis, a bad stack file, Redis refusing the rooms...
            if self.sup.stop_requested.is_set():
                return self._end(0, None)
            why = str(exc) if isinstance(exc, (StackError, ConfigError)) \
                else f"{type(exc).__name__}: {exc}"
            return self._end(2, f"cannot start: {why}")
        self.say(self.stack.describe())
        self.say("loading the models...")
        t0 = time.time()
        if not self.stack.wait_ready():
            return self._end(*self._why_not_ready())
        self.say(f"workers ready in {time.time() - t0:.1f} s")
        started = time.time()
        capture = self._start_capture()
        if not self.sup.wait_until(self._session_active, SESSION_START_TIMEOUT_S, 0.1):
            if self.sup.stop_requested.is_set():
                return self._end(0, None)
            return self._end(1, "the capture did not register its session "
                             f"(exit status {capture.returncode})")
        players = self._start_players(started)
        self.captions = CaptionFollower(self.stack.client, self.stack.keys, self.room,
                                        self.session, self.lang, self._show).start()
        return self._follow(capture, players)

    # -- steps ------------------------------------------------------------------------
    def _start_capture(self) -> Child:
        args = ["capture", "--room", self.room, "--session", self.session, "--lang",
                self.source_lang, "--speaker", "demo", "--no-meter"]
        if self.mic is not None:
            args += ["--device", self.mic]
            self.say("speak now; Ctrl-C ends the session")
        else:
            assert self.source is not None
            args += ["--file", str(self.source)]
            self.say(f"speaking {self.source} at real-time pace")
        self.say(f"session {self.session} in room {self.room} "
                 f"(s2st inspect --room {self.room} --session {self.session})")
        return self.sup.start("capture", s2st_argv(*args), self.stack.env(),
                              tier=TIER_CLIENTS + 1, service=False)

    def _session_active(self) -> bool:
        client = self.stack.client()
        try:
            raw = client.hget(self.stack.keys.status(self.room), self.session)
            return raw == b"active"
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            client.close()

    def _start_players(self, since: float) -> list[Child]:
        common = ["play", "--room", self.room, "--lang", self.lang, "--until-ended",
                  "--end-wait", f"{END_WAIT_S:g}", "--from", f"{since - 1:.3f}"]
        self.out.parent.mkdir(parents=True, exist_ok=True)
        players = [self.sup.start(
            "player", s2st_argv(*common, "--out", str(self.out), "--json",
                                str(self.summary_path)),
            self.stack.env(), tier=TIER_CLIENTS, service=False)]
        if self.speakers:
            players.append(self.sup.start("speaker", s2st_argv(*common), self.stack.env(),
                                          tier=TIER_CLIENTS, service=False))
        return players

    def _show(self, caption: Caption) -> None:
        tag = caption.lang if caption.source else f"  {caption.lang}"
        self.sup.say(f"{caption.text}   (+{caption.delay_s:.1f} s)", tag)

    def _follow(self, capture: Child, players: list[Child]) -> int:
        """Wait for the capture to end, then for the players to play the rest (bounded)."""
        began = time.monotonic()
        source_s = _length_s(self.source) if self.source is not None else None
        capture_bound = None if source_s is None else CAPTURE_FACTOR * source_s + MARGIN_S
        if self.sup.wait_child(capture, capture_bound) is None and self.mic is not None \
                and self.sup.stop_requested.is_set() and self.sup.signals == 1:
            self.say("ending the session; the translation finishes (Ctrl-C again stops now)")
            self.sup.stop([capture])
            self.sup.stop_requested.clear()
        if capture.returncode is None and not self.sup.stop_requested.is_set() \
                and self.sup.failed() is None:
            return self._end(1, f"the capture of {self.source} did not finish within "
                             f"{capture_bound:.0f} s")
        if capture.returncode is not None and capture.returncode != 0 \
                and not self.sup.stop_requested.is_set():
            return self._end(1, f"the capture failed (exit status {capture.returncode})")
        spoken_s = source_s if source_s is not None else time.monotonic() - began
        drain_bound = END_WAIT_S + 2 * spoken_s + MARGIN_S
        drain_until = time.monotonic() + drain_bound
        for player in players:
            if self.sup.wait_child(player, max(drain_until - time.monotonic(), 0.1)) is None:
                break
        if self.sup.stop_requested.is_set():
            return self._end(0, None)
        dead = self.sup.failed()
        if dead is not None:
            return self._end(1, f"{dead.name} exited with status {dead.returncode}")
        for extra in players[1:]:
            if extra.returncode not in (0, None):
                self.say(f"the speakers could not be used (see '{extra.name}' above); "
                         "the WAV file was written all the same")
        main = players[0]
        if main.returncode is None:
            return self._end(1, f"the player did not finish within {drain_bound:.0f} s after "
                             "the capture ended")
        if main.returncode == PLAYER_GAVE_UP:
            return self._end(1, "the player gave up waiting for the end of the translated "
                             "speech (its 'gave up' line above says where it stopped)")
        if main.returncode != 0:
            return self._end(1, f"the player failed (exit status {main.returncode})")
        return self._end(0, None, expect_speech=True)

    def _why_not_ready(self) -> tuple[int, str | None]:
        if self.sup.stop_requested.is_set():
            return 0, None
        dead = self.sup.failed()
        if dead is not None:
            return 1, f"{dead.name} exited with status {dead.returncode}"
        return 1, "the workers did not become ready in time"

    # -- the end ------------------------------------------------------------------------
    def _end(self, code: int, problem: str | None, *, expect_speech: bool = False) -> int:
        if problem:
            self.say(problem)
        self.say("stopping")
        codes = self.sup.stop()
        if self.captions is not None:
            self.captions.stop()
        self.say("stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
        played = self._report()
        if expect_speech and played == 0:
            self.say("no translated speech came out: see the messages above")
            return 1
        return code

    def _report(self) -> int:
        """Print the player's summary; the number of pieces played (0 without a summary)."""
        try:
            summary = json.loads(self.summary_path.read_text())
        except (OSError, ValueError):
            return 0
        counts = summary.get("counts", {})
        played = int(counts.get("released", 0))
        lines = [f"{played} speech pieces played (missing {counts.get('missing', 0)}, "
                 f"late {counts.get('late', 0)}, duplicates {counts.get('duplicates', 0)}) "
                 f"-> {self.out}"]
        if self.captions is not None:
            n_src = sum(1 for c in self.captions.captions if c.source)
            lines.append(f"{n_src} committed source captions, "
                         f"{len(self.captions.captions) - n_src} translated")
        lines.append("latency, from the end of the spoken words to the translation "
                     f"({self.lang}):")
        names = {"first": "first piece of a segment starts playing",
                 "playback": "each piece starts playing", "available": "each piece arrives"}
        for kind, text in names.items():
            s = summary.get("latency", {}).get(kind, {})
            if s.get("count"):
                lines.append(f"  {text:<40} p50 {_fmt_seconds(s['p50'])}  "
                             f"p95 {_fmt_seconds(s['p95'])}  "
                             f"max {_fmt_seconds(s['max'])}  (n={s['count']})")
        self.say("\n".join(lines))
        return played


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.2f} s"


def _length_s(path: Path) -> float:
    """The recording's length in seconds (soundfile; ffprobe for what it does not read)."""
    try:
        import soundfile

        return float(soundfile.info(str(path)).duration)
    except Exception:  # not installed, or a format soundfile does not read
        pass
    try:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                              "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        return float(out.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return 600.0  # unknown: a generous bound rather than none
