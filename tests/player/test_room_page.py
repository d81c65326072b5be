"""The room page in a real browser (Debian chromium driven by Playwright) during a live session.

Captions and speech are published in the timing of a live session while the page is open;
the page must show the captions (source and translation), the speaker, receive and
schedule the audio pieces and show a latency.  A screenshot is saved for a person to look at.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from player_helpers import SegmentSpec, load_clip, speech_pieces, transcript, translation
from room_browser import HAVE_CHROMIUM, room_page
from web_server import running_web

from bus.keys import Partition
from bus.producer import Publisher
from bus.registry import Registry
from bus.settings import BusSettings

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
UTTERANCES = ("fleurs_en_1972", "fleurs_en_1728")
SPANISH_VOICE = ("picovoice_cheetah_es", "fleurs_es_1764")


async def speak_live(client: Any, settings: BusSettings, manifest: dict[str, Any]) -> list[int]:
    """Two utterances of a live English session, transcribed, translated to es and spoken."""
    pub = Publisher(client, settings)
    tkey = settings.keys.stream("transcript", Partition("plenary", "talk"))
    xkey = settings.keys.stream("translation", Partition("plenary", "talk", "es"))
    skey = settings.keys.room_stream("speech", "plenary", "es")
    pieces_sent = []
    for utt, (cid, voice) in enumerate(zip(UTTERANCES, SPANISH_VOICE, strict=True)):
        row = manifest[cid]
        words = row["transcript"].split()
        t0 = time.time()
        for n in range(3, len(words), 4):  # partials grow while the speaker talks
            await pub.publish(tkey, transcript("plenary", "talk", 2 * utt, "partial",
                                               " ".join(words[:n]), t0, time.time(), utt))
            await asyncio.sleep(0.15)
        await pub.publish(tkey, transcript("plenary", "talk", 2 * utt, "committed",
                                           row["transcript"], t0, time.time(), utt, final=True))
        t1 = time.time()
        await asyncio.sleep(0.3)  # MT
        await pub.publish(xkey, translation("plenary", "talk", utt, "committed",
                                            row["translation_es"], row["transcript"], t0, t1,
                                            utterance=utt))
        await asyncio.sleep(0.3)  # TTS of the first piece
        clip = load_clip(manifest[voice]["path"], seconds=2.0)
        pieces = speech_pieces("plenary", "es", SegmentSpec("talk", utt, t0, t1, clip,
                                                            row["translation_es"], "Ada"), 3)
        for piece in pieces:
            await pub.publish(skey, piece)
            await asyncio.sleep(0.2)
        pieces_sent.append(len(pieces))
    return pieces_sent


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="apt-get install -y chromium")
async def test_room_page_shows_captions_and_plays_audio(
        client: Any, settings: BusSettings, manifest: dict[str, Any]) -> None:
    await Registry(client, settings.keys).register_session("plenary", "talk", "en", "Ada")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "room-page.png"
    with running_web(settings, hold_s=0.05, deadline_s=0.5) as base:
        async with room_page(f"{base}/room/plenary?lang=es") as (page, errors):
            speaking = asyncio.create_task(speak_live(client, settings, manifest))
            await page.wait_for_function(
                "[...document.querySelectorAll('#source .partial')]"
                ".some(e => e.textContent.trim().length > 0)", timeout=10_000)
            partial = page.locator("#source .partial").first
            partial_text = await partial.inner_text()
            partial_color = await partial.evaluate("e => getComputedStyle(e).color")
            committed_color = await page.evaluate(
                "getComputedStyle(document.querySelector('#source .committed')).color")
            await page.screenshot(path=str(ARTIFACTS / "room-page-partial.png"))
            sent = await speaking
            await page.wait_for_function(
                f"window.s2stStats.buffersReceived >= {sum(sent)}", timeout=10_000)
            await page.wait_for_timeout(300)
            await page.screenshot(path=str(shot), full_page=True)
            stats = await page.evaluate("window.s2stStats")
            source = await page.inner_text("#source")
            target = await page.inner_text("#translation")
            speakers = await page.inner_text("#speakers")
            latency = await page.inner_text("#latency")
    print(f"\nroom page screenshot: {shot}")
    assert errors == []
    for cid in UTTERANCES:
        assert manifest[cid]["transcript"] in source
        assert manifest[cid]["translation_es"] in target
    assert "Ada" in speakers
    assert stats["buffersReceived"] == stats["buffersScheduled"] == sum(sent)
    assert stats["audioBytes"] == 2 * 2 * 24_000 * len(UTTERANCES)
    assert stats["audioState"] == "running"
    assert all(0 < x < 10 for x in stats["latencies"])
    assert "p50" in latency and "–" not in latency.split("captions")[0]
    assert partial_text and partial_text.split()[0] == manifest[UTTERANCES[0]]["transcript"].split()[0]
    assert partial_color == "rgb(156, 163, 175)"  # grey
    assert committed_color == "rgb(17, 17, 17)"  # black
    assert shot.stat().st_size > 10_000


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="apt-get install -y chromium")
async def test_room_page_language_chosen_on_the_page_and_phone_width(
        client: Any, settings: BusSettings) -> None:
    """The page offers the room's languages and switches its feed without a reload; on a
    390 x 844 screen the two columns stay side by side and nothing is wider than the screen."""
    reg = Registry(client, settings.keys)
    await reg.create_room("plenary", ["es", "fr"])
    await reg.register_session("plenary", "talk", "en", "Ada Lovelace-Byron")
    pub = Publisher(client, settings)
    t0 = time.time()
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis " * 3
    await pub.publish(settings.keys.stream("transcript", Partition("plenary", "talk")),
                      transcript("plenary", "talk", 0, "committed", long_word + "good morning",
                                 t0 - 2, t0 - 1, final=True))
    with running_web(settings, hold_s=0.05, deadline_s=0.5) as base:
        async with room_page(f"{base}/room/plenary?lang=es") as (page, errors):
            await page.wait_for_function(
                "document.querySelectorAll('#lang-select option').length === 2", timeout=10_000)
            options = await page.eval_on_selector_all("#lang-select option", "os => os.map(o => o.value)")
            await page.select_option("#lang-select", "fr")
            await page.wait_for_function("window.s2stStats.connected && window.s2stStats.lang === 'fr'",
                                         timeout=10_000)
            await asyncio.sleep(1.5)  # the new feed has scanned the room's sessions
            for lang, text in (("es", "buenos días"), ("fr", "bonjour")):
                await pub.publish(
                    settings.keys.stream("translation", Partition("plenary", "talk", lang)),
                    translation("plenary", "talk", 0, "committed", text, "good morning", t0 - 2,
                                t0 - 1, utterance=0, lang=lang))
            await page.wait_for_function(
                "document.querySelector('#translation').textContent.includes('bonjour')",
                timeout=10_000)
            await pub.publish(settings.keys.stream("transcript", Partition("plenary", "talk")),
                              transcript("plenary", "talk", 1, "committed", long_word, t0 - 1,
                                         t0, utterance=1, final=True))
            await page.wait_for_function(
                "document.querySelectorAll('#source .line').length >= 1", timeout=10_000)
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.wait_for_timeout(300)
            width = await page.evaluate("document.documentElement.scrollWidth")
            columns = await page.evaluate(
                "[...document.querySelectorAll('main section')].map(s => s.getBoundingClientRect().left)")
            await page.screenshot(path=str(ARTIFACTS / "room-page-phone.png"))
            url = page.url
            translated = await page.inner_text("#translation")
            header = await page.inner_text("#lang")
    assert errors == []
    assert options == ["es", "fr"] and header == "fr" and url.endswith("/room/plenary?lang=fr")
    assert "bonjour" in translated and "buenos" not in translated
    assert width <= 390
    assert len(columns) == 2 and columns[1] > columns[0]  # side by side
