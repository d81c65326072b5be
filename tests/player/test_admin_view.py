"""The operator view of `s2st web` (/admin, /api/admin/*): admin tokens only; the overview of
a bus written by the test (a live session, workers, a consumer group, a health record, a
dead letter, translated speech); creating rooms and issuing links; the page in Chromium."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from room_browser import ARGS, CHROMIUM, HAVE_CHROMIUM
from test_web_access import SECRET, request, token
from web_server import running_web

from bus.events import DeadLetter, Speech
from bus.keys import Partition
from bus.registry import Registry
from bus.settings import BusSettings
from bus.testing import make_chunk
from player_agent.web.tokens import verify

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LATENCY_S = 1.2  # capture end to the first speech piece, as the test writes them


def post(url: str, body: Any, tok: str | None = None, *, in_query: bool = False,
         content_type: str = "application/json") -> tuple[int, Any]:
    """(status, JSON reply) of a POST; the token as a Bearer header (or in the query)."""
    if in_query and tok:
        url, tok = f"{url}?token={tok}", None
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": content_type})
    if tok:
        req.add_header("Authorization", f"Bearer {tok}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def write_bus(client: Any, settings: BusSettings) -> None:
    """Room hall (es) with Ada's live session: audio read in part by the asr group, an asr
    and an mt worker (the mt one with a fallback in its health record), one dead letter,
    and two segments of Spanish speech written LATENCY_S after their source audio ended."""
    keys = settings.keys
    reg = Registry(client, keys)
    await reg.create_room("hall", ["es"])
    await reg.register_session("hall", "ada-1", "en", "Ada")
    audio = keys.stream("audio", Partition("hall", "ada-1"))
    for seq in range(5):
        await client.xadd(audio, make_chunk("hall", "ada-1", seq).to_fields())
    await client.xgroup_create(audio, "asr", id="0")
    await client.xreadgroup("asr", "w-asr", {audio: ">"}, count=2)  # 2 pending, 3 to read
    now = time.time()
    await client.zadd(keys.workers("asr"), {"w-asr": now})
    await client.zadd(keys.workers("mt"), {"w-mt": now})
    await client.hset(keys.health("mt"), "w-mt",
                      json.dumps({"fallback": {"en-es": "nllb cannot load: apertium"}}))
    await client.xadd(keys.deadletter("hall"), DeadLetter(
        stage="mt", worker="w-mt", stream=keys.stream("transcript", Partition("hall", "ada-1")),
        entry_id="1-0", error="rejected: no route en-xx", attempts=1, failed_at=now,
        session="ada-1").to_fields())
    for seq in range(2):
        for part in range(2):
            t = time.time()
            await client.xadd(keys.room_stream("speech", "hall", "es"), Speech(
                room="hall", session="ada-1", seq=seq, part=part, last=part == 1, lang="es",
                src_seq=seq, text="hola", rate=16000, samples=160, duration=0.01,
                pcm=bytes(320), capture_start=t - LATENCY_S - 2, capture_end=t - LATENCY_S,
                emitted=t).to_fields())


async def test_overview_needs_an_admin_token_and_shows_the_bus(client: Any,
                                                               settings: BusSettings) -> None:
    await write_bus(client, settings)
    with running_web(settings, secret=SECRET) as base:
        async def get(path: str, tok: str | None = None) -> tuple[int, str, Any]:
            return await asyncio.to_thread(request, base + path, tok)

        admin = token("x", "admin")
        for tok, reason in ((None, "missing"), (token("hall"), "role"),
                            (token("hall", "speaker"), "role")):
            status, body, _ = await get("/admin", tok)
            assert status == 401 and f'data-reason="{reason}"' in body, body
            status, body, _ = await get("/api/admin/overview", tok)
            assert status == 401 and json.loads(body)["error"] == reason
        status, body, headers = await get(f"/admin?token={admin}")
        assert status == 200 and "admin.js" in body and headers["Cache-Control"] == "no-store"
        status, body, _ = await get("/api/admin/overview", admin)
        assert status == 200
        data = json.loads(body)

    [room] = data["rooms"]
    assert room["room"] == "hall" and [t["lang"] for t in room["targets"]] == ["es"]
    [session] = room["sessions"]
    assert (session["session"], session["speaker"], session["lang"], session["state"]) == (
        "ada-1", "Ada", "en", "active")
    assert 0 <= session["age_s"] < 30 and 0 <= session["heartbeat_s"] < 30
    asr, mt = data["stages"]["asr"], data["stages"]["mt"]
    assert (asr["live"], asr["lag"], asr["pending"], asr["streams"]) == (1, 3, 2, 1)
    assert [w["id"] for w in asr["workers"]] == ["w-asr"]
    assert mt["live"] == 1 and mt["workers"][0]["health"] == {
        "fallback": {"en-es": "nllb cannot load: apertium"}}
    dead = data["dead_letters"]
    assert dead["total"] == 1 and dead["by"] == [{"stage": "mt", "reason": "rejected",
                                                  "count": 1}]
    assert (dead["latest"][0]["room"], dead["latest"][0]["session"]) == ("hall", "ada-1")
    latency = data["latency"]
    assert latency["segments"] == 2 and latency["window_s"] == 60  # first pieces only
    # (the XADD right after the capture end was set: a loaded host may add a little)
    assert LATENCY_S - 0.05 < latency["p50"] <= latency["p95"] < LATENCY_S + 1.0
    assert [(b["room"], b["lang"], b["segments"]) for b in latency["by_lang"]] == [
        ("hall", "es", 2)]


async def test_rooms_are_created_and_links_issued(client: Any, settings: BusSettings) -> None:
    reg = Registry(client, settings.keys)
    admin = token("x", "admin")
    with running_web(settings, secret=SECRET) as base:
        async def call(path: str, body: Any, tok: str | None = admin, **kw: Any
                       ) -> tuple[int, Any]:
            return await asyncio.to_thread(post, base + path, body, tok, **kw)

        new = {"room": "annex", "langs": "fr, ca"}
        assert (await call("/api/admin/rooms", new, None))[0] == 401
        assert (await call("/api/admin/rooms", new, token("annex", "speaker")))[0] == 401
        # the token only in a header, the body only as JSON: no form of another site can post
        assert (await call("/api/admin/rooms", new, in_query=True))[0] == 401
        assert (await call("/api/admin/rooms", new, content_type="text/plain"))[0] == 415
        assert not await reg.room_exists("annex")
        status, reply = await call("/api/admin/rooms", {"room": "bad:id", "langs": ["fr"]})
        assert status == 400 and "room id" in reply["error"]
        assert (await call("/api/admin/rooms", {"room": "annex", "langs": ["f r"]}))[0] == 400
        status, reply = await call("/api/admin/rooms", new)
        assert status == 201 and reply == {"room": "annex", "targets": ["ca", "fr"],
                                           "created": True}
        assert await reg.room_targets("annex") == ["ca", "fr"]
        status, reply = await call("/api/admin/rooms", {"room": "annex", "langs": ["de"]})
        assert status == 200 and reply["created"] is False and reply["targets"] == ["ca", "de",
                                                                                    "fr"]

        ask = {"room": "annex", "role": "speaker", "ttl": "30m"}
        assert (await call("/api/admin/tokens", ask, token("annex", "speaker")))[0] == 401
        assert (await call("/api/admin/tokens", ask, in_query=True))[0] == 401
        status, reply = await call("/api/admin/tokens", ask)
        assert status == 201 and reply["link"].startswith(f"{base}/room/annex/speak?token=")
        grant = verify(SECRET, reply["link"].split("token=")[1], "annex", "speaker")
        assert grant.role == "speaker" and grant.token_id == reply["token_id"]
        assert abs(grant.expires - (time.time() + 1800)) < 10
        status, reply = await call("/api/admin/tokens", {"room": "annex", "lang": "fr"})
        assert status == 201 and reply["link"].startswith(f"{base}/room/annex?lang=fr&token=")
        listener = reply["link"].split("token=")[1]
        assert verify(SECRET, listener, "annex", "listener").role == "listener"
        assert abs(verify(SECRET, listener, "annex", "listener").expires
                   - (time.time() + 8 * 3600)) < 10  # 8 h unless told
        assert (await asyncio.to_thread(request, reply["link"]))[0] == 200  # the link opens
        for bad, code, message in (({"room": "annex", "role": "admin"}, 400, "listener or speaker"),
                                   ({"room": "nowhere"}, 404, "no room"),
                                   ({"room": "annex", "ttl": "forever"}, 400, "--ttl"),
                                   ({"room": "annex", "lang": "xx-bad!"}, 400, "")):
            status, reply = await call("/api/admin/tokens", bad)
            assert status == code and message in reply["error"], (bad, reply)
    with running_web(settings) as base:  # no secret: nothing to sign with
        status, reply = await asyncio.to_thread(post, base + "/api/admin/tokens",
                                                {"room": "annex"})
        assert status == 409 and "S2ST_WEB_SECRET" in reply["error"]
        assert (await asyncio.to_thread(request, base + "/api/admin/overview"))[0] == 200


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="apt-get install -y chromium")
async def test_admin_page_in_chromium(client: Any, settings: BusSettings) -> None:
    from playwright.async_api import async_playwright

    await write_bus(client, settings)
    admin = token("x", "admin")
    ARTIFACTS.mkdir(exist_ok=True)
    with running_web(settings, secret=SECRET) as base:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{base}/admin?token={admin}")
                await page.wait_for_function("window.s2stAdmin && window.s2stAdmin.updates > 0",
                                             timeout=15_000)
                assert page.url == f"{base}/admin"  # the token left the address bar
                rooms = await page.inner_text("#rooms")
                assert "hall" in rooms and "es" in rooms and "Ada" in rooms and "active" in rooms
                stages = await page.inner_text("#stages")
                assert "asr" in stages and "w-asr" in stages and "nllb cannot load" in stages
                assert "p50 1." in await page.inner_text("#latency")
                assert "rejected: no route en-xx" in await page.inner_text("#dead")
                assert await page.evaluate(
                    "document.documentElement.scrollWidth <= window.innerWidth")
                await page.screenshot(path=str(ARTIFACTS / "admin-page.png"), full_page=True)
                # create a room, then make a listener link for it, from the page
                await page.fill("#new-room", "annex")
                await page.fill("#new-langs", "fr")
                await page.click("#create-room button")
                await page.wait_for_function(
                    "document.querySelector('#rooms').textContent.includes('annex')",
                    timeout=10_000)
                assert "created annex (fr)" in await page.inner_text("#create-out")
                await page.select_option("#link-room", "annex")
                await page.fill("#link-lang", "fr")
                await page.click("#issue button")
                await page.wait_for_function("document.querySelector('#link-out').value",
                                             timeout=10_000)
                link = await page.input_value("#link-out")
                assert link.startswith(f"{base}/room/annex?lang=fr&token=")
                assert verify(SECRET, link.split("token=")[1], "annex", "listener")
                assert errors == []
            finally:
                await browser.close()
