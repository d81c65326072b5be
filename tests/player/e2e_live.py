"""Measure the player behind the real MT and TTS workers (not collected by pytest).

A live English session is simulated at the transcript level: each dev-set clip's reference
transcript is committed when the clip would have finished being spoken (capture_end =
that moment). `s2st mt` and `s2st tts` run as subprocesses; `s2st play` writes the Spanish
speech to a WAV file and reports latency (capture end -> available / playback start), so
the figures cover MT + TTS + bus + player, without ASR.

    .venv/bin/python tests/player/e2e_live.py [--clips 4] [--out e2e.wav] [--tts es=espeak] [--warmup 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bus.connection import connect  # noqa: E402
from bus.events import ControlEvent, Transcript  # noqa: E402
from bus.keys import Partition  # noqa: E402
from bus.producer import Publisher  # noqa: E402
from bus.registry import Registry  # noqa: E402
from bus.settings import BusSettings  # noqa: E402

CLIPS = ("fleurs_en_1972", "fleurs_en_1728", "fleurs_en_1904", "ljspeech_LJ001-0005")


def manifest() -> dict[str, dict]:
    path = ROOT.parent / "shared" / "data" / "speech" / "manifest.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["id"]: r for r in rows}


async def speak(settings: BusSettings, room: str, session: str, clips: list[dict]) -> None:
    client = await connect(settings)
    pub = Publisher(client, settings)
    key = settings.keys.stream("transcript", Partition(room, session))
    for utt, row in enumerate(clips):
        t0 = time.time()
        await asyncio.sleep(row["duration_s"])  # the speaker talks
        t1 = time.time()
        await pub.publish(key, Transcript(
            room=room, session=session, seq=utt, capture_start=t0, capture_end=t1,
            kind="committed", utterance=utt, text=row["transcript"], lang="en", sample_start=0,
            sample_end=int(row["duration_s"] * 16000), final=True))
    now = time.time()
    await Registry(client, settings.keys).end_session(
        room, session, marker_stream=key,
        marker=ControlEvent.end_of(room, session, at=now, seq=len(clips), emitted=now))
    await client.aclose()


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "test-artifacts" / "e2e-es.wav"))
    ap.add_argument("--tts", default="", help="S2ST_TTS_BACKENDS for the TTS worker")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds for models to load")
    args = ap.parse_args()
    prefix = "e2e" + uuid.uuid4().hex[:8]
    settings = BusSettings(key_prefix=prefix, log_level="warning")
    env = dict(os.environ, S2ST_KEY_PREFIX=prefix, S2ST_LOG_LEVEL="warning")
    if args.tts:
        env["S2ST_TTS_BACKENDS"] = args.tts
    client = await connect(settings)
    reg = Registry(client, settings.keys)
    await reg.create_room("e2e", ["es"])
    await reg.register_session("e2e", "talk", "en", "Ada")
    s2st = str(ROOT / ".venv" / "bin" / "s2st")
    Path(args.out).parent.mkdir(exist_ok=True)
    summary = Path(args.out).with_suffix(".json")
    workers = [subprocess.Popen([s2st, "mt"], env=env),  # noqa: ASYNC220 - started once
               subprocess.Popen([s2st, "tts", "--warm", "es"], env=env)]  # noqa: ASYNC220
    player = subprocess.Popen([s2st, "play", "--room", "e2e", "--lang", "es",  # noqa: ASYNC220
                               "--out", args.out, "--until-ended", "--json", str(summary)],
                              env=env)
    try:
        await asyncio.sleep(args.warmup)  # workers load their models
        rows = manifest()
        await speak(settings, "e2e", "talk", [rows[c] for c in CLIPS[: args.clips]])
        code = await asyncio.to_thread(player.wait, 180)
    finally:
        for p in (player, *workers):
            if p.poll() is None:
                p.terminate()
        for p in (player, *workers):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        keys = [k async for k in client.scan_iter(match=prefix + ":*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    print(summary.read_text() if summary.exists() else "no summary")
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
