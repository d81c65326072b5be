"""The speaker page in headless Chromium with a fake microphone fed from a dev-set clip, against
`s2st web` on the test's Redis (no workers): the level meter moves, the link is live under
the speaker's name, the session's captions show partial and committed, a link down longer
than the grace continues in a new session from offset 0, "Leave" ends it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from player_helpers import load_clip, transcript
from room_browser import ARGS, CHROMIUM, HAVE_CHROMIUM
from web_server import running_web

from bus.keys import Partition
from bus.producer import Publisher
from bus.registry import Registry
from bus.settings import BusSettings

RATE = 16000


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="apt-get install -y chromium")
async def test_speak_page_meter_captions_new_session_after_the_grace_and_leave(
        client: Any, settings: BusSettings, manifest: dict[str, Any], tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    reg = Registry(client, settings.keys)
    await reg.create_room("hall", ["es"])
    wav = tmp_path / "mic.wav"
    clip = load_clip(manifest["fleurs_en_1972"]["path"])
    soundfile.write(str(wav), np.concatenate([np.zeros(RATE // 2, "<i2"), clip]), RATE,
                    subtype="PCM_16")
    args = [*ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"]
    with running_web(settings, speaker_grace_s=0.5) as base:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                page = await browser.new_page(viewport={"width": 390, "height": 844})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{base}/room/hall/speak")
                await page.fill("#speaker", "Ada")
                await page.click("#start")
                await page.wait_for_function("window.s2stSpeak.connected", timeout=15_000)
                first = await page.evaluate("window.s2stSpeak.session")
                link = await page.inner_text("#link")
                await page.wait_for_function("window.s2stSpeak.level > -40", timeout=15_000)
                meter = await page.evaluate("document.querySelector('#level').style.width")
                # the session's captions, as the ASR would write them
                pub = Publisher(client, settings)
                tkey = settings.keys.stream("transcript", Partition("hall", first))
                t0 = time.time()
                await pub.publish(tkey, transcript("hall", first, 0, "partial", "many peo",
                                                   t0 - 1, t0))
                await page.wait_for_function(
                    "document.querySelector('#source .partial')?.textContent.includes('many')",
                    timeout=10_000)
                await pub.publish(tkey, transcript("hall", first, 1, "committed",
                                                   "many people", t0 - 1, t0, final=True))
                await page.wait_for_function(
                    "document.querySelector('#source .committed')?.textContent === 'many people'",
                    timeout=10_000)
                # the link down for longer than the grace: a new session takes the audio on
                await page.evaluate("window.s2stSpeakDrop(2500)")
                await page.wait_for_function(
                    "window.s2stSpeak.connected && window.s2stSpeak.newSessions === 1",
                    timeout=20_000)
                second = await page.evaluate("window.s2stSpeak.session")
                await asyncio.sleep(1.5)
                await page.click("#leave")
                await page.wait_for_function("window.s2stSpeak.ended", timeout=15_000)
                stats = await page.evaluate("window.s2stSpeak")
                width = await page.evaluate("document.documentElement.scrollWidth")
            finally:
                await browser.close()
    assert errors == [] and link == "live · Ada" and meter not in ("", "0%")
    assert second != first and stats["ended"] == "left" and stats["framesLost"] == 0
    assert width <= 390
    sessions = {s.session: s for s in await reg.sessions("hall")}
    assert sessions[first].reason == "disconnected" and sessions[second].reason == "left"
    assert sessions[first].speaker == sessions[second].speaker == "Ada"
    for session in (first, second):
        entries = [f for _, f in await client.xrange(
            settings.keys.stream("audio", Partition("hall", session)))]
        assert [int(e[b"seq"]) for e in entries] == list(range(len(entries)))
    # the new session's offsets start at 0 again: nothing taken for a hole or a repeat
    status = stats["status"]
    assert status["gap_samples"] == 0 and status["duplicate_samples"] == 0, status
    assert 0 < status["offset"] <= stats["offset"] < 10 * RATE
