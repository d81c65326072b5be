"""Room access tokens: `s2st room token`, and `s2st web` refusing pages and websockets
without a valid token for the room and role; HTTPS; no token in the server's logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websockets
from player_helpers import transcript
from room_browser import ARGS, CHROMIUM, HAVE_CHROMIUM
from web_server import free_port, running_web

from bus.keys import Partition
from bus.producer import Publisher
from bus.registry import Registry
from bus.settings import BusSettings
from ops.cli import main as s2st_main
from player_agent.web import app as web_app
from player_agent.web.tokens import (
    RedactTokens,
    SecretError,
    TokenRefused,
    check_secret,
    mint,
    parse_ttl,
    verify,
)

SECRET_TEXT = "a-test-secret-that-is-long-enough-0123456789"
SECRET = SECRET_TEXT.encode()
S2ST = [sys.executable, "-m", "ops.cli"]


def request(url: str, token: str | None = None, context: ssl.SSLContext | None = None
            ) -> tuple[int, str, Any]:
    """(status, body, headers) of a GET, redirects not followed; ``token`` as a Bearer."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kw: Any) -> None:
            return None

    handlers: list[Any] = [NoRedirect()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=10) as resp:
            return resp.status, resp.read().decode(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


def token(room: str, role: Any = "listener", ttl_s: float = 3600, **kw: Any) -> str:
    return mint(SECRET, room, role, ttl_s, **kw)[0]


def tampered(tok: str, other: str) -> str:
    """``other``'s payload (another room, a later expiry) under ``tok``'s signature."""
    return other.split(".")[0] + "." + tok.split(".")[1]


# -- the token itself -------------------------------------------------------------------


def test_tokens_sign_room_role_expiry_and_refuse_anything_else() -> None:
    tok, grant = mint(SECRET, "conf1", "listener", 600, now=1000)
    assert (grant.room, grant.role, grant.expires) == ("conf1", "listener", 1600)
    assert verify(SECRET, tok, "conf1", "listener", now=1599) == grant
    assert mint(SECRET, "conf1", "listener", 600)[1].token_id != grant.token_id

    def reason(tok: str | None, room: str = "conf1", need: Any = "listener",
               now: float = 1500) -> str:
        with pytest.raises(TokenRefused) as info:
            verify(SECRET, tok, room, need, now=now)
        return info.value.reason

    assert reason(None) == reason("") == "missing"
    assert reason(tok, now=1600) == "expired"
    assert reason(tok, room="conf2") == "room"
    assert reason(tok, need="speaker") == "role"
    later, _ = mint(SECRET, "conf1", "listener", 6000, now=1000)
    for bad in (tampered(tok, later), tampered(tok, token("conf2")), tok[:-2] + "AA", "x.y",
                "nodot", mint(b"another-secret-" * 3, "conf1", "listener", 600, now=1000)[0],
                "." + tok.split(".")[1]):
        assert reason(bad) == "invalid", bad
    admin, _ = mint(SECRET, "ignored", "admin", 600, now=1000)
    for room in ("conf1", "conf2"):
        for need in ("listener", "speaker", "admin"):
            assert verify(SECRET, admin, room, need, now=1500).role == "admin"
    speaker, _ = mint(SECRET, "conf1", "speaker", 600, now=1000)
    assert verify(SECRET, speaker, "conf1", "listener", now=1500).role == "speaker"
    assert reason(speaker, need="admin") == "role"


def test_secret_ttl_and_log_redaction() -> None:
    with pytest.raises(SecretError, match="S2ST_WEB_SECRET is not set"):
        check_secret(None)
    with pytest.raises(SecretError, match="too short"):
        check_secret("x" * 31)
    assert check_secret("x" * 32) == b"x" * 32
    assert [parse_ttl(t) for t in ("90s", "30m", "8h", "2d", "45")] == [90, 1800, 28800,
                                                                      172800, 45]
    for bad in ("0h", "91d", "8 hours", "-1h", ""):
        with pytest.raises(ValueError, match="--ttl"):
            parse_ttl(bad)
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s" %d',
                               ("1.2.3.4", "GET", "/room/a?lang=es&token=abc.def", 200), None)
    assert RedactTokens().filter(record)
    assert record.getMessage() == '1.2.3.4 - "GET /room/a?lang=es&token=***" 200'


# -- s2st room token --------------------------------------------------------------------


def test_room_token_command_prints_a_signed_link(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("S2ST_WEB_SECRET", SECRET_TEXT)
    assert s2st_main(["room", "token", "conf1", "--role", "listener", "--ttl", "8h",
                      "--base-url", "https://host:8443/", "--lang", "es"]) == 0
    out, err = capsys.readouterr()
    link = out.strip()
    assert link.startswith("https://host:8443/room/conf1?lang=es&token=") and "\n" not in link
    grant = verify(SECRET, link.split("token=")[1], "conf1", "listener")
    assert abs(grant.expires - (time.time() + 8 * 3600)) < 5
    assert "listener link for room conf1, valid until" in err and grant.token_id in err
    assert s2st_main(["room", "token", "conf1", "--role", "speaker", "--ttl", "30m"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("http://127.0.0.1:8080/room/conf1/speak?token=")
    assert verify(SECRET, link.split("token=")[1], "conf1", "speaker").role == "speaker"
    assert s2st_main(["room", "token", "--role", "admin"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("http://127.0.0.1:8080/admin?token=")
    assert verify(SECRET, link.split("token=")[1], "any", "admin").room == "*"
    for argv, message in ((["conf1", "--ttl", "soon"], "--ttl"),
                          (["--role", "listener"], "a room id is required"),
                          (["bad:room"], "invalid room id"),
                          (["conf1", "--base-url", "host:8080"], "--base-url")):
        assert s2st_main(["room", "token", *argv]) == 2, argv
        out, err = capsys.readouterr()
        assert out == "" and message in err, (argv, err)


def test_room_token_command_without_a_secret_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if k != "S2ST_WEB_SECRET"}
    done = subprocess.run([*S2ST, "room", "token", "conf1"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert "S2ST_WEB_SECRET is not set" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([*S2ST, "room", "token", "conf1"], capture_output=True, text=True,
                          env=dict(env, S2ST_WEB_SECRET="short"), timeout=60)
    assert done.returncode == 2 and "S2ST_WEB_SECRET is too short (5 characters" in done.stderr


# -- pages ------------------------------------------------------------------------------


async def test_pages_need_a_token_for_their_room_and_role(client: Any, settings: BusSettings
                                                          ) -> None:
    reg = Registry(client, settings.keys)
    await reg.create_room("hall", ["es"])
    await reg.create_room("annex", ["fr"])
    listener = token("hall")
    with running_web(settings, secret=SECRET) as base:
        async def get(path: str, tok: str | None = None) -> tuple[int, str, Any]:
            return await asyncio.to_thread(request, base + path, tok)

        status, body, headers = await get("/room/hall?lang=es")
        assert status == 401 and "Access refused" in body and 'data-reason="missing"' in body
        assert "needs an access link" in body and headers["WWW-Authenticate"].startswith("Bearer")
        status, body, headers = await get(f"/room/hall?lang=es&token={listener}")
        assert status == 200 and "room.js" in body
        assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
        assert (await get("/room/hall?lang=es", listener))[0] == 200  # Authorization: Bearer
        expired = mint(SECRET, "hall", "listener", 60, now=time.time() - 3600)[0]
        cases = {
            "room": (token("annex"), "is for room 'annex', not 'hall'"),
            "expired": (expired, "expired at"),
            "invalid": (tampered(listener, token("hall", ttl_s=90 * 86400)), "not valid"),
        }
        for reason, (tok, message) in cases.items():
            status, body, _ = await get(f"/room/hall?lang=es&token={tok}")
            assert status == 401 and f'data-reason="{reason}"' in body and message in body, body
        # the speaker page wants a speaker token
        status, body, _ = await get(f"/room/hall/speak?token={listener}")
        assert status == 401 and "A listener token does not let you speak" in body
        status, body, _ = await get(f"/room/hall/speak?token={token('hall', 'speaker')}")
        assert status == 200 and "speak.js" in body
        assert (await get(f"/room/hall?lang=es&token={token('hall', 'speaker')}"))[0] == 200
        # no language: the redirect keeps the token
        status, _, headers = await get(f"/room/hall?token={listener}")
        assert status == 307 and headers["Location"] == f"/room/hall?lang=es&token={listener}"
        # an unknown room says nothing to someone without a token
        assert (await get("/room/nowhere?lang=es"))[0] == 401
        assert (await get(f"/room/bad:id?token={listener}"))[0] == 400
        # the room list is for admins; an admin token opens every room
        admin = token("x", "admin")
        assert (await get("/"))[0] == 401
        assert (await get("/", listener))[0] == 401
        status, body, _ = await get(f"/?token={admin}")
        assert status == 200 and f"/room/annex?lang=fr&amp;token={admin}" in body
        assert (await get("/api/rooms"))[0] == 401
        status, body, _ = await get("/api/rooms", admin)
        assert status == 200 and [r["room"] for r in json.loads(body)["rooms"]] == ["annex",
                                                                                   "hall"]
        for path in ("/room/hall?lang=es", "/room/annex?lang=fr"):
            assert (await get(path, admin))[0] == 200
        assert (await get("/room/nowhere?lang=es", admin))[0] == 404
        assert (await get("/healthz"))[0] == 200


# -- websockets -------------------------------------------------------------------------


async def refused(url: str, first: dict[str, Any] | None = None, **kw: Any) -> tuple[int, str]:
    async with websockets.connect(url, **kw) as ws:
        if first is not None:
            await ws.send(json.dumps(first))
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 15)
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


async def first_messages(url: str, first: dict[str, Any] | None, n: int, **kw: Any
                         ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with websockets.connect(url, **kw) as ws:
        if first is not None:
            await ws.send(json.dumps(first))
        while len(out) < n:
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, str):
                out.append(json.loads(message))
    return out


async def test_websockets_need_a_token_for_their_room(client: Any, settings: BusSettings,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_app, "AUTH_WAIT_S", 0.5)
    reg = Registry(client, settings.keys)
    await reg.create_room("hall", ["es"])
    await reg.register_session("hall", "s1", "en", "Ada")
    listener = token("hall")
    expired = mint(SECRET, "hall", "listener", 60, now=time.time() - 3600)[0]
    with running_web(settings, secret=SECRET) as base:
        ws = base.replace("http", "ws") + "/ws/hall?lang=es"
        code, reason = await refused(ws)  # nothing sent within AUTH_WAIT_S
        assert code == 4401 and "needs an access link" in reason
        assert await refused(ws, {"type": "hello"}) == (4401, reason)
        for tok, message in ((token("annex"), "is for room 'annex'"), (expired, "expired"),
                             (tampered(listener, token("annex")), "not valid")):
            code, reason = await refused(ws, {"type": "auth", "token": tok})
            assert code == 4401 and message in reason, reason
            code, reason = await refused(f"{ws}&token={tok}")
            assert code == 4401 and message in reason, reason
        # a valid token, as the page sends it (first message) or in the URL: the feed flows
        messages = await first_messages(ws, {"type": "auth", "token": listener}, 1)
        assert messages[0]["type"] == "sessions" and messages[0]["sessions"][0]["speaker"] == "Ada"
        reading = asyncio.create_task(first_messages(f"{ws}&token={listener}", None, 2))
        await asyncio.sleep(1.0)
        t0 = time.time() - 2
        await Publisher(client, settings).publish(
            settings.keys.stream("transcript", Partition("hall", "s1")),
            transcript("hall", "s1", 0, "committed", "good morning", t0, t0 + 1, final=True))
        sessions, caption = await reading
        assert sessions["type"] == "sessions"
        assert (caption["type"], caption["text"]) == ("caption", "good morning")
        # the room's existence is told only after the token
        ws_base = base.replace("http", "ws")
        assert (await refused(f"{ws_base}/ws/nowhere?lang=es"))[0] == 4401
        admin = token("x", "admin")
        assert (await refused(f"{ws_base}/ws/nowhere?lang=es&token={admin}"))[0] == 4404
        assert (await refused(f"{ws_base}/ws/ha:ll?lang=es&token={admin}"))[0] == 4400


# -- the command: HTTPS, logs, refusing to start ------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def start_web(settings: BusSettings, *args: str, **env: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k != "S2ST_WEB_SECRET"}
    full_env.update(S2ST_KEY_PREFIX=settings.key_prefix, S2ST_LOG_LEVEL="info", **env)
    proc = subprocess.Popen([*S2ST, "web", "--port", str(port), *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, port


def wait_up(proc: subprocess.Popen[str], url: str, context: ssl.SSLContext | None = None) -> None:
    deadline = time.time() + 30
    while True:
        try:
            if request(url, context=context)[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "s2st web did not come up"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.terminate()
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return out, err


async def test_https_with_tokens_that_never_reach_the_logs(client: Any, settings: BusSettings,
                                                           tmp_path: Path) -> None:
    await Registry(client, settings.keys).create_room("hall", ["es"])
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    proc, port = start_web(settings, "--cert", str(cert), "--key", str(key),
                           S2ST_WEB_SECRET=SECRET_TEXT)
    listener = token("hall")
    base = f"https://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_up, proc, f"{base}/healthz", context)
        status, body, _ = await asyncio.to_thread(request, f"{base}/room/hall?lang=es&token="
                                                  f"{listener}", None, context)
        assert status == 200 and "room.js" in body
        assert (await asyncio.to_thread(request, f"{base}/room/hall?lang=es", None, context)
                )[0] == 401
        wss = f"wss://127.0.0.1:{port}/ws/hall?lang=es"
        for url, first in ((wss, {"type": "auth", "token": listener}),
                           (f"{wss}&token={listener}", None)):
            messages = await first_messages(url, first, 1, ssl=context)
            assert messages[0]["type"] == "sessions"
        assert (await refused(f"{wss}&token={token('annex')}", ssl=context))[0] == 4401
        with pytest.raises(OSError):  # plain HTTP is not served
            request(f"http://127.0.0.1:{port}/healthz")
    finally:
        out, err = stop(proc)
    logs = out + err
    assert "access tokens required" in logs and "https://127.0.0.1" in logs
    # the requests were logged (uvicorn's access log, the websocket lines), the token not
    assert "GET /room/hall?lang=es&token=***" in logs and '"WebSocket /ws/hall' in logs, logs
    assert listener not in logs and listener.split(".")[1] not in logs


def test_web_refuses_to_start_open_off_loopback(settings: BusSettings, tmp_path: Path) -> None:
    cases = [
        (["--host", "0.0.0.0"], {}, "refusing to serve 0.0.0.0 without access tokens"),
        (["--host", "192.0.2.1"], {}, "set S2ST_WEB_SECRET"),
        ([], {"S2ST_WEB_SECRET": "too-short"}, "S2ST_WEB_SECRET is too short"),
        (["--cert", str(tmp_path / "c.pem")], {}, "give both --cert and --key"),
        (["--cert", str(tmp_path / "c.pem"), "--key", str(tmp_path / "k.pem")], {},
         "no such file"),
    ]
    for args, env, message in cases:
        proc, _ = start_web(settings, *args, **env)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and message in err and "Traceback" not in err, (args, err)


def test_no_auth_serves_without_tokens_and_says_so(settings: BusSettings) -> None:
    proc, port = start_web(settings, "--no-auth", S2ST_WEB_SECRET=SECRET_TEXT)
    try:
        wait_up(proc, f"http://127.0.0.1:{port}/healthz")
        assert request(f"http://127.0.0.1:{port}/api/rooms")[0] == 200
    finally:
        _, err = stop(proc)
    assert "ACCESS TOKENS OFF" in err and "--no-auth" in err


# -- the page in a browser ----------------------------------------------------------------


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="apt-get install -y chromium")
async def test_page_takes_the_token_out_of_the_address_bar(client: Any, settings: BusSettings
                                                           ) -> None:
    from playwright.async_api import async_playwright

    await Registry(client, settings.keys).create_room("hall", ["es"])
    listener = token("hall")
    with running_web(settings, secret=SECRET) as base:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{base}/room/hall?lang=es&token={listener}")
                connected = "window.s2stStats && window.s2stStats.connected"
                await page.wait_for_function(connected, timeout=15_000)
                assert page.url == f"{base}/room/hall?lang=es"
                assert await page.inner_text("#status") == "live"
                await page.reload()  # the address has no token now: the tab's kept one
                deadline = time.time() + 15
                while True:  # (the refusal page goes back with it: navigations meanwhile)
                    try:
                        if await page.evaluate(connected):
                            break
                    except Exception:
                        pass
                    assert time.time() < deadline, await page.content()
                    await asyncio.sleep(0.2)
                assert page.url == f"{base}/room/hall?lang=es" and errors == []
                stranger = await browser.new_page()  # another tab, no token
                response = await stranger.goto(f"{base}/room/hall?lang=es")
                assert response is not None and response.status == 401
                assert "needs an access link" in await stranger.inner_text("#reason")
                await stranger.goto(f"{base}/room/hall?lang=es&token={token('annex')}")
                assert "is for room 'annex'" in await stranger.inner_text("#reason")
            finally:
                await browser.close()
