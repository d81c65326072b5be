"""`s2st play` as a user runs it: a recorded session replayed into a WAV file, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from player_helpers import RATE, SegmentSpec, end_marker, load_clip, speech_pieces

from bus.keys import Partition
from bus.producer import Publisher
from bus.registry import Registry
from bus.settings import BusSettings
from player_agent.subscriber import parse_position

S2ST = [sys.executable, "-m", "ops.cli"]


def run_cli(settings: BusSettings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, S2ST_KEY_PREFIX=settings.key_prefix, S2ST_LOG_LEVEL="warning")
    return subprocess.run([*S2ST, *args], env=env, capture_output=True, text=True, timeout=timeout)


async def test_replay_a_recorded_session_into_a_wav_file(
        client: Any, settings: BusSettings, manifest: dict[str, Any], tmp_path: Path) -> None:
    reg = Registry(client, settings.keys)
    info = await reg.register_session("conf", "talk1", "en", "Ada")
    pub = Publisher(client, settings)
    key = settings.keys.room_stream("speech", "conf", "es")
    clip = load_clip(manifest["picovoice_cheetah_es"]["path"])
    t0 = info.started
    for seq in range(3):
        seg = SegmentSpec("talk1", seq, t0 + 5 * seq, t0 + 5 * seq + 4, clip, "Un homenaje")
        pieces = speech_pieces("conf", "es", seg, 2)
        await pub.publish_many(key, [*pieces, pieces[0]])  # type: ignore[list-item]
    await pub.publish(key, end_marker("conf", "talk1"))
    await reg.end_session("conf", "talk1")
    out, summary = tmp_path / "talk.wav", tmp_path / "talk.json"
    proc = run_cli(settings, "play", "--room", "conf", "--lang", "es", "--from", "start",
                   "--out", str(out), "--fast", "--until-ended", "--json", str(summary))
    assert proc.returncode == 0, proc.stderr
    assert "pieces played=6 duplicates=3" in proc.stdout
    assert "latency playback" in proc.stdout
    data = json.loads(summary.read_text())
    assert data["counts"]["released"] == 6 and data["latency"]["playback"]["count"] == 6
    with wave.open(str(out)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert w.getframerate() == RATE
    assert seconds == pytest.approx(10 + len(clip) / RATE, abs=0.01)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--room", "a{b}", "--lang", "es", "--out", "x.wav"], "invalid room id"),
        (["--room", "conf", "--lang", "spanish", "--out", "x.wav"], "invalid language code"),
        (["--room", "conf", "--lang", "es", "--from", "yesterday", "--out", "x.wav"], "--from"),
        (["--room", "conf", "--lang", "es", "--deadline-ms", "-1", "--out", "x.wav"],
         "--deadline-ms"),
        (["--room", "nosuchroom", "--lang", "es", "--out", "x.wav"], "does not exist"),
        (["--lang", "es"], "--room and --lang are required"),
        (["--room", "conf", "--lang", "es", "--out", "/nonexistent/dir/x.wav"], "cannot write"),
    ],
)
def test_bad_input_gets_a_clear_error(settings: BusSettings, tmp_path: Path, args: list[str],
                                      message: str) -> None:
    args = [str(tmp_path / a) if a == "x.wav" else a for a in args]
    proc = run_cli(settings, "play", *args, timeout=30)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_positions() -> None:
    now = 1_800_000_000.0
    assert parse_position("$") == "$" and parse_position("live") == "$"
    assert parse_position("start") == "0-0"
    assert parse_position("1700000000000-3") == "1700000000000-3"
    assert parse_position("90s", now=now) == f"{int((now - 90) * 1000) - 1}-18446744073709551615"
    assert parse_position("2m", now=now).startswith(str(int((now - 120) * 1000) - 1))
    assert parse_position("1800000000.5").startswith("1800000000499-")
    iso = datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    assert parse_position("2027-01-15T08:00:00Z") == f"{int(iso * 1000) - 1}-18446744073709551615"
    for bad in ("yesterday", "12", "-5s", "1700000000000-x"):
        with pytest.raises(ValueError, match="--from"):
            parse_position(bad)


def test_web_command_serves_and_stops(settings: BusSettings) -> None:
    import urllib.error
    import urllib.request

    from web_server import free_port

    port = free_port()
    env = dict(os.environ, S2ST_KEY_PREFIX=settings.key_prefix, S2ST_LOG_LEVEL="warning")
    proc = subprocess.Popen([*S2ST, "web", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert json.loads(r.read()) == {"ok": True}
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.communicate()[1]
                assert time.time() < deadline, "s2st web did not come up"
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/room/nowhere?lang=es", timeout=5)
        assert info.value.code == 404
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert proc.returncode == 0


async def test_until_ended_gives_up_with_exit_4_and_says_where_the_end_stopped(
        client: Any, settings: BusSettings, tmp_path: Path) -> None:
    reg = Registry(client, settings.keys)
    await reg.register_session("conf", "talk1", "en", "Ada")
    summary = tmp_path / "talk.json"
    env = dict(os.environ, S2ST_KEY_PREFIX=settings.key_prefix, S2ST_LOG_LEVEL="warning")
    player = await asyncio.to_thread(
        subprocess.Popen,
        [*S2ST, "play", "--room", "conf", "--lang", "es", "--out", str(tmp_path / "talk.wav"),
         "--fast", "--until-ended", "--end-wait", "1", "--json", str(summary)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await _until(lambda: client.zscore(settings.keys.targets("conf"), "es"))
        await asyncio.sleep(0.6)  # the player saw the session active
        audio = settings.keys.stream("audio", Partition("conf", "talk1"))
        await reg.end_session("conf", "talk1", marker_stream=audio,
                              marker=end_marker("conf", "talk1"))  # no worker ever reads it
        _out, err = await asyncio.to_thread(player.communicate, timeout=60)
    finally:
        player.kill()
    proc = subprocess.CompletedProcess(player.args, player.returncode, _out, err)
    assert proc.returncode == 4, proc.stderr
    assert "s2st play: gave up: session talk1 (es): end marker in audio; none in " \
        f"{settings.keys.stream('transcript', Partition('conf', 'talk1'))}, which the asr " \
        "stage writes (no group asr on audio: no worker read it)" in proc.stderr, proc.stderr
    data = json.loads(summary.read_text())
    assert data["finished"] is False and data["unfinished"][0].startswith("session talk1")


async def _until(check: Any, timeout_s: float = 30.0) -> None:
    """Wait for ``await check()`` to be truthy (the player started listening), bounded."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "the player did not start listening"
        await asyncio.sleep(0.05)
