"""The web server: validation of room and language, and the websocket feed of a room."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
import websockets
from player_helpers import SegmentSpec, load_clip, speech_pieces, transcript, translation
from web_server import running_web

from bus.keys import Partition
from bus.producer import Publisher
from bus.registry import Registry
from bus.settings import BusSettings
from player_agent.web.feed import parse_speech_frame


def get(url: str) -> tuple[int, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kw: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode() + exc.headers.get("location", "")


async def test_only_existing_rooms_and_valid_languages_open(client: Any, settings: BusSettings
                                                            ) -> None:
    await Registry(client, settings.keys).create_room("hall", ["es"])
    with running_web(settings) as base:
        page = await asyncio.to_thread(get, f"{base}/room/hall?lang=es")
        assert page[0] == 200 and "room.js" in page[1]
        assert (await asyncio.to_thread(get, f"{base}/room/nowhere?lang=es"))[0] == 404
        status, body = await asyncio.to_thread(get, f"{base}/room/ha%7Bll%7D?lang=es")
        assert status == 400 and "invalid room id" in body
        status, body = await asyncio.to_thread(get, f"{base}/room/hall?lang=es:x")
        assert status == 400 and "invalid language code" in body
        status, body = await asyncio.to_thread(get, f"{base}/room/hall")
        assert status == 307 and body.endswith("/room/hall?lang=es")
        rooms = json.loads((await asyncio.to_thread(get, f"{base}/api/rooms"))[1])
        assert rooms["rooms"] == [{"room": "hall", "targets": ["es"], "active_sessions": 0}]
        ws_base = base.replace("http", "ws")
        for path, code in (("/ws/nowhere?lang=es", 4404), ("/ws/hall?lang=e%7Bs", 4400),
                           ("/ws/ha:ll?lang=es", 4400)):
            async with websockets.connect(ws_base + path) as ws:
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == code, path
    # nothing was created for the rejected names
    keys = [k async for k in client.scan_iter(match=settings.key_prefix + ":*")]
    assert not any(b"nowhere" in k or b"ha:ll" in k for k in keys)


async def collect(url: str, stop_after: float) -> list[Any]:
    out: list[Any] = []
    async with websockets.connect(url, max_size=None) as ws:
        end = time.time() + stop_after
        while (left := end - time.time()) > 0:
            try:
                out.append(await asyncio.wait_for(ws.recv(), left))
            except TimeoutError:
                break
    return out


async def test_feed_streams_captions_and_ordered_speech_per_language(
        client: Any, settings: BusSettings, manifest: dict[str, Any]) -> None:
    reg = Registry(client, settings.keys)
    await reg.register_session("hall", "s1", "en", "Ada Lovelace")
    await reg.register_session("annex", "a1", "en", "Bob")
    pub = Publisher(client, settings)
    row = manifest["fleurs_en_1972"]
    clip = load_clip(manifest["fleurs_es_1764"]["path"], seconds=1.5)
    with running_web(settings, hold_s=0.05, deadline_s=0.5) as base:
        ws = base.replace("http", "ws")
        pages = [asyncio.create_task(collect(f"{ws}/ws/{room}?lang={lang}", 3.0))
                 for room, lang in (("hall", "es"), ("hall", "fr"), ("annex", "es"))]
        await asyncio.sleep(1.0)
        t0 = time.time() - 4
        words = row["transcript"].split()
        tkey = settings.keys.stream("transcript", Partition("hall", "s1"))
        await pub.publish(tkey, transcript("hall", "s1", 0, "partial", " ".join(words[:3]), t0,
                                           t0 + 1))
        await pub.publish(tkey, transcript("hall", "s1", 0, "committed", row["transcript"], t0,
                                           t0 + 4, final=True))
        for lang, text in (("es", row["translation_es"]), ("fr", "Beaucoup de gens")):
            await pub.publish(settings.keys.stream("translation", Partition("hall", "s1", lang)),
                              translation("hall", "s1", 0, "committed", text, row["transcript"],
                                          t0, t0 + 4, lang=lang))
            pieces = speech_pieces("hall", lang, SegmentSpec("s1", 0, t0, t0 + 4, clip, text,
                                                             "Ada Lovelace"), 3)
            key = settings.keys.room_stream("speech", "hall", lang)
            await pub.publish_many(key, [pieces[2], pieces[0], pieces[0], pieces[1]])  # type: ignore[list-item]
        hall_es, hall_fr, annex_es = await asyncio.gather(*pages)

    def split(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        frames = [parse_speech_frame(m) for m in messages if isinstance(m, bytes)]
        return [json.loads(m) for m in messages if isinstance(m, str)], [h for h, _ in frames]

    es_json, es_speech = split(hall_es)
    assert es_json[0]["type"] == "sessions"
    assert es_json[0]["sessions"][0]["speaker"] == "Ada Lovelace"
    captions = [(m["track"], m["kind"], m["text"]) for m in es_json if m["type"] == "caption"]
    assert captions == [("source", "partial", " ".join(words[:3])),
                        ("source", "committed", row["transcript"]),
                        ("translation", "committed", row["translation_es"])]
    assert [(h["seq"], h["part"]) for h in es_speech] == [(0, 0), (0, 1), (0, 2)]
    assert all(h["speaker"] == "Ada Lovelace" and h["rate"] == 24000 for h in es_speech)
    pcm = b"".join(parse_speech_frame(m)[1] for m in hall_es if isinstance(m, bytes))
    assert np.array_equal(np.frombuffer(pcm, dtype="<i2"), clip)
    fr_json, fr_speech = split(hall_fr)
    assert [m["text"] for m in fr_json if m.get("track") == "translation"] == ["Beaucoup de gens"]
    assert len(fr_speech) == 3 and all(h["text"] in "Beaucoup de gens" for h in fr_speech)
    annex_json, annex_speech = split(annex_es)
    assert annex_speech == [] and not any(m["type"] == "caption" for m in annex_json)
    assert await reg.room_targets("hall") == ["es", "fr"]


async def test_feed_follows_later_sessions_from_their_start_and_drops_old_ones(
        client: Any, settings: BusSettings) -> None:
    from player_agent.web.feed import RoomFeed

    reg = Registry(client, settings.keys)
    await reg.register_session("hall", "old", "en", "Old Speaker")
    await reg.end_session("hall", "old")
    await asyncio.sleep(0.6)
    feed = RoomFeed(client, settings.keys, "hall", "es", rescan_s=0.2, linger_s=0.5,
                    block_ms=50)
    got: list[Any] = []

    async def consume() -> None:
        async for message in feed.messages():
            got.append(message)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    await reg.register_session("hall", "new", "en", "Grace")
    t = time.time()
    # written before the feed's next rescan: must still be seen (followed from the start)
    await Publisher(client, settings).publish(
        settings.keys.stream("transcript", Partition("hall", "new")),
        transcript("hall", "new", 0, "committed", "Hello everyone.", t - 1, t, final=True))
    await asyncio.sleep(0.8)
    task.cancel()
    sessions = [m for m in got if isinstance(m, dict) and m["type"] == "sessions"]
    assert sessions[0]["sessions"] == []
    assert [s["speaker"] for s in sessions[-1]["sessions"]] == ["Grace"]
    captions = [m for m in got if isinstance(m, dict) and m["type"] == "caption"]
    assert [(c["session"], c["text"]) for c in captions] == [("new", "Hello everyone.")]
    assert not any("old" in s for s in feed.reader.positions)
