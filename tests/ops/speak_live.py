"""Browser mic to browser ear through the real stack: one Chromium page speaks a dev-set clip
(a fake microphone fed from a WAV file), another listens in Spanish.

Used by tests/ops/test_speak_page_live.py and, as a script, to measure the latency::

    python tests/ops/speak_live.py --clips fleurs_en_1972,fleurs_en_1728,fleurs_en_1904

`s2st up` runs the workers (tiny.en, Apertium, espeak-ng) and `s2st web`; the speaker page
gets the WAV through Chromium's ``--use-file-for-fake-audio-capture``; the listener page
records when each Spanish piece starts to be heard (the audio output's timestamps, in the
server's clock). The segment latency is from the end of the source words a segment
translates (its ``capture_end``: the ASR's last word end on the capture timeline) to the
moment its first piece starts playing in the listener page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "player"), str(HERE.parents[1])]

from ops_helpers import Output, base_env, cpu_stack_config, descendants, s2st, stop_hard  # noqa: E402
from room_browser import ARGS, CHROMIUM  # noqa: E402

from player_agent.latency import percentile  # noqa: E402
from player_agent.web.tokens import mint  # noqa: E402

SECRET = "speak-live-test-secret-0123456789abcdef"
ROOM = "live"
RATE = 16000
LEAD_S, GAP_S, TAIL_S = 1.0, 1.5, 4.0  # silence before, between and after the clips
CONFIG = cpu_stack_config({ROOM: ["es"]})
TRUE_JS = "window.s2stSpeak && window.s2stSpeak.connected"


@dataclass
class Run:
    """What one speak-and-listen run saw."""

    session: str = ""
    speaker: dict[str, Any] = field(default_factory=dict)  # window.s2stSpeak
    listener: dict[str, Any] = field(default_factory=dict)  # window.s2stStats
    speaker_captions: str = ""
    translation: str = ""
    source: str = ""
    speakers: str = ""
    errors: list[str] = field(default_factory=list)
    overflow: dict[str, int] = field(default_factory=dict)  # page -> scrollWidth at 390 px
    refusals: dict[str, int] = field(default_factory=dict)
    audio: list[dict[bytes, bytes]] = field(default_factory=list)  # the audio stream
    speech: list[tuple[int, int, bool]] = field(default_factory=list)  # (seq, part, last)
    transcript: str = ""  # the committed transcript
    mt_sources: list[str] = field(default_factory=list)  # what the MT translated, in order
    clip_s: float = 0.0
    clip_transcript: str = ""  # the manifest's, of the clips spoken

    def segment_latencies(self) -> list[float]:
        return [p["start"] - p["capture_end"] for p in self.listener.get("played", [])
                if p["session"] == self.session and p["part"] == 0]


def load_manifest() -> dict[str, dict[str, Any]]:
    speech = Path(os.environ.get("S2ST_SPEECH_DIR", HERE.parents[2] / "shared/data/speech"))
    rows = [json.loads(line) for line in (speech / "manifest.jsonl").read_text().splitlines()
            if line.strip()]
    return {r["id"]: dict(r, path=str(speech / r["audio"])) for r in rows}


def make_wav(clips: list[str], path: Path) -> float:
    """The clips at 16 kHz mono int16 with silence around them; returns the length (s)."""
    import soundfile
    import soxr

    manifest = load_manifest()
    parts = [np.zeros(int(LEAD_S * RATE), np.float32)]
    for cid in clips:
        audio, sr = soundfile.read(manifest[cid]["path"], dtype="float32", always_2d=True)
        mono = soxr.resample(audio.mean(axis=1), sr, RATE)
        parts += [0.5 * mono / (float(np.abs(mono).max()) or 1.0),
                  np.zeros(int(GAP_S * RATE), np.float32)]
    parts.append(np.zeros(int(TAIL_S * RATE), np.float32))
    samples = np.concatenate(parts)
    soundfile.write(str(path), samples, RATE, subtype="PCM_16")
    return len(samples) / RATE


async def speak_and_listen(base: str, wav: Path, clip_s: float, clips: list[str], *,
                           drop_at_s: float | None, settle_s: float = 60.0) -> Run:
    """Listener page (es) first, then the speaker page speaks the WAV once and leaves."""
    from playwright.async_api import async_playwright

    run = Run(clip_s=clip_s, clip_transcript=" ".join(
        load_manifest()[cid]["transcript"] for cid in clips))
    speaker_tok = mint(SECRET.encode(), ROOM, "speaker", 3600)[0]
    listener_tok = mint(SECRET.encode(), ROOM, "listener", 3600)[0]
    args = [*ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            # refused without a token, and with a listener's
            stranger = await browser.new_page()
            for name, url in (("none", f"{base}/room/{ROOM}/speak"),
                              ("listener", f"{base}/room/{ROOM}/speak?token={listener_tok}")):
                response = await stranger.goto(url)
                run.refusals[name] = response.status if response else 0
            await stranger.close()
            listen = await browser.new_page(viewport={"width": 1000, "height": 700})
            speak = await browser.new_page(viewport={"width": 1000, "height": 700})
            for page in (listen, speak):
                page.on("pageerror", lambda exc: run.errors.append(str(exc)))
            await listen.goto(f"{base}/room/{ROOM}?lang=es&token={listener_tok}")
            await listen.wait_for_function("window.s2stStats && window.s2stStats.connected",
                                           timeout=30_000)
            await speak.goto(f"{base}/room/{ROOM}/speak?token={speaker_tok}")
            await speak.fill("#speaker", "Ada")
            await speak.click("#start")
            await speak.wait_for_function(TRUE_JS, timeout=30_000)
            if drop_at_s is not None:  # the link drops mid-speech, down for 1.5 s
                await speak.wait_for_function(
                    f"window.s2stSpeak.offset >= {int(drop_at_s * RATE)}", timeout=30_000)
                await speak.evaluate("window.s2stSpeakDrop(1500)")
                await speak.wait_for_function(f"{TRUE_JS} && window.s2stSpeak.reconnects >= 1",
                                              timeout=30_000)
            # once the clip is spoken (before Chromium loops the file): leave
            await speak.wait_for_function(
                f"window.s2stSpeak.offset >= {int((clip_s - 0.5) * RATE)}",
                timeout=int(clip_s * 1000) + 30_000, polling=50)
            await speak.click("#leave")
            await speak.wait_for_function("window.s2stSpeak.ended", timeout=30_000)
            run.speaker = await speak.evaluate("window.s2stSpeak")
            run.session = run.speaker["session"]
            # every Spanish piece of the session heard: its end marker on the speech stream
            await listen.wait_for_function(
                f"(window.s2stStats.ends || []).includes({json.dumps(run.session)} + '/speech')",
                timeout=int(settle_s * 1000))
            await listen.wait_for_timeout(500)
            run.listener = await listen.evaluate("window.s2stStats")
            committed = ("s => [...document.querySelectorAll(s + ' .committed')]"
                         ".map(e => e.textContent).join(' ')")
            run.translation = await listen.evaluate(committed, "#translation")
            run.source = await listen.evaluate(committed, "#source")
            run.speakers = await listen.inner_text("#speakers")
            run.speaker_captions = await speak.evaluate(committed, "#source")
            shots = HERE.parents[1] / "test-artifacts"
            shots.mkdir(exist_ok=True)
            for name, page in (("listen", listen), ("speak", speak)):
                await page.set_viewport_size({"width": 390, "height": 844})
                await page.wait_for_timeout(200)
                run.overflow[name] = await page.evaluate(
                    "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
                await page.screenshot(path=str(shots / f"speak-live-{name}-phone.png"))
        finally:
            await browser.close()
    return run


def read_bus(run: Run, redis_url: str, prefix: str) -> None:
    """The session's audio stream, committed transcript and Spanish speech, from Redis."""
    import redis

    from bus.events import Speech, decode_event
    from bus.keys import Keys, Partition

    keys = Keys(prefix)
    r = redis.Redis.from_url(redis_url)
    try:
        run.audio = [f for _, f in r.xrange(keys.stream("audio", Partition(ROOM, run.session)))]
        texts = []
        for _, fields in r.xrange(keys.stream("transcript", Partition(ROOM, run.session))):
            if fields.get(b"type") == b"transcript" and fields[b"kind"] == b"committed":
                texts.append(fields[b"text"].decode())
        run.transcript = " ".join(texts)
        key = keys.stream("translation", Partition(ROOM, run.session, "es"))
        for _, fields in r.xrange(key):
            if fields.get(b"type") == b"translation" and fields[b"kind"] == b"committed":
                run.mt_sources.append(fields[b"source_text"].decode())
        for _, fields in r.xrange(keys.room_stream("speech", ROOM, "es")):
            event = decode_event(fields)
            if isinstance(event, Speech) and event.session == run.session:
                run.speech.append((event.seq, event.part, event.last))
    finally:
        r.close()


def apertium_es(text: str) -> str:
    return subprocess.run(["apertium", "-u", "eng-spa"], input=text, capture_output=True,
                          text=True, check=True, timeout=60).stdout


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W\d_]{4,}", text.lower())}


def start_stack(tmp: Path, port: int, redis_url: str, prefix: str) -> tuple[Any, Output, Any]:
    config = tmp / "stack.toml"
    config.write_text(CONFIG)
    env = base_env(S2ST_REDIS_URL=redis_url, S2ST_KEY_PREFIX=prefix, S2ST_WEB_SECRET=SECRET)
    stack = s2st("up", "--config", str(config), "--web", str(port), "--state-dir",
                 str(tmp / "state"), env=env)
    return stack, Output(stack), env


def main() -> int:
    from ops.redis_servers import free_port

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", default="fleurs_en_1972,fleurs_en_1728,fleurs_en_1904,"
                        "fleurs_en_1938")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--drop-at", type=float, default=None, help="drop the link at (s)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    prefix = "speaklive" + uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        wav = tmp / "clip.wav"
        clip_s = make_wav(args.clips.split(","), wav)
        port = free_port()
        stack, out, _ = start_stack(tmp, port, args.redis_url, prefix)
        children = []
        try:
            if not out.wait_for("ready.", 240):
                print(out.text(), file=sys.stderr)
                return 1
            children = descendants(stack.pid)
            t0 = time.monotonic()
            run = asyncio.run(speak_and_listen(f"http://127.0.0.1:{port}", wav, clip_s,
                                               args.clips.split(","), drop_at_s=args.drop_at,
                                               settle_s=120))
            read_bus(run, args.redis_url, prefix)
        finally:
            stop_hard(stack, children)
            import redis

            r = redis.Redis.from_url(args.redis_url)
            keys = list(r.scan_iter(match=prefix + ":*", count=1000))
            if keys:
                r.delete(*keys)
    lat = run.segment_latencies()
    figures = {"clips": args.clips, "audio_s": round(clip_s, 2), "segments": len(lat),
               "p50_s": round(percentile(lat, 50), 3), "p95_s": round(percentile(lat, 95), 3),
               "max_s": round(max(lat), 3), "latencies": [round(x, 3) for x in lat],
               "run_s": round(time.monotonic() - t0, 1), "errors": run.errors}
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
