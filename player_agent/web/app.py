"""The web server of `s2st web`: a page per room and a websocket feed per page.

Routes:

- ``GET /``                      the rooms and their languages, as links
- ``GET /api/rooms``             the same as JSON
- ``GET /room/{room}?lang=es``   the live page (static HTML + JS, no build step)
- ``WS  /ws/{room}?lang=es``     the page's feed (see feed.py)
- ``GET /room/{room}/speak``      the speaker page: the microphone into the room (speak.py)
- ``WS  /ws/{room}/speak``       the speaker page's audio in, its status and captions out
- ``GET /healthz``               Redis reachable (never needs a token)
- ``GET /admin``                 the operator view (admin.py), polling:
- ``GET /api/admin/overview``    rooms, sessions, stages (workers, lag, health), latency of
                                 the last minute, dead letters, as JSON
- ``POST /api/admin/rooms``      ``{"room": "conf1", "langs": ["es", "ca"]}``: create a room
- ``POST /api/admin/tokens``     ``{"room", "role": listener|speaker, "ttl": "8h", "lang"}``:
                                 a link with a new token (needs the secret)

With a secret (``S2ST_WEB_SECRET``, tokens.py) every page and websocket needs a token that
opens the room for the role: listener for ``/room`` and ``/ws``, speaker for ``/speak``, admin
for ``/``, ``/api/rooms`` and the operator view. The token comes as ``?token=`` (or
``Authorization: Bearer``; the operator view's POSTs take it in that header only, what its
page's script sends, with a JSON body: no cookie is involved and no other site's form can
make one); a websocket without one in its URL must send ``{"type": "auth", "token": ...}``
first (what the page does, so the token is in no URL the server logs). A page is refused with a 401 page
saying why (missing, invalid, expired, wrong room, wrong role), a websocket closed with code
4401 and the reason.

Room and language come from the URL and are checked (``check_id``, ``check_lang``) before
any key is built from them; a room that is not registered is a 404 (a websocket is closed
with code 4404, a bad id or language with 4400).  An open page keeps its language among
the room's targets (``Registry.add_listener``), like a player.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from bus import clock
from bus.connection import connect
from bus.ids import InvalidId, check_id, check_lang
from bus.logs import get_logger
from bus.registry import Registry
from bus.settings import BusSettings
from bus.tasks import cancel_and_wait
from player_agent.web.admin import AdminView
from player_agent.web.feed import RoomFeed
from player_agent.web.speak import LiveSpeaker, Speakers, parse_frame
from player_agent.web.tokens import (
    ANY_ROOM,
    Role,
    TokenRefused,
    expiry_text,
    mint,
    parse_ttl,
    redact_server_logs,
    verify,
)

log = get_logger("player.web")
STATIC = Path(__file__).resolve().parent / "static"
LISTENER_TTL_S = 30.0
AUTH_WAIT_S = 10.0  # a websocket without a token in its URL must send it within this
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
# a page opened again without its token (reloaded after the address bar was cleaned) asks
# for the one the page kept in sessionStorage
RETRY_WITH_KEPT_TOKEN = """<script>
const kept = sessionStorage.getItem("s2st-token:" + location.pathname);
if (kept) { const u = new URL(location.href); u.searchParams.set("token", kept);
            location.replace(u.href); }
</script>"""


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MissingLang(BadRequest):
    pass


def token_of(request: Request | WebSocket) -> str | None:
    return request.query_params.get("token") or bearer_of(request)


def bearer_of(request: Request | WebSocket) -> str | None:
    """The token of an ``Authorization: Bearer`` header."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def refused_page(exc: TokenRefused) -> Response:
    body = (f"<!doctype html><meta charset=utf-8><title>s2st: access refused</title>"
            f'<h1>Access refused</h1><p id="reason" data-reason="{exc.reason}">'
            f"{html.escape(exc.message, quote=False)}</p>")
    if exc.reason == "missing":
        body += RETRY_WITH_KEPT_TOKEN
    else:
        body += "<script>sessionStorage.removeItem('s2st-token:' + location.pathname)</script>"
    return HTMLResponse(body, 401, headers={**PAGE_HEADERS,
                                            "WWW-Authenticate": 'Bearer realm="s2st"'})


def create_app(settings: BusSettings, *, hold_s: float = 0.15, deadline_s: float = 1.0,
               secret: bytes | None = None, speaker_grace_s: float = 30.0) -> Starlette:
    """The app; with ``secret`` every page and websocket needs a token (tokens.py).

    ``speaker_grace_s``: how long a browser speaker's session waits for its page to come back
    after its websocket dropped before it is ended."""
    redact_server_logs()

    def refusal(request: Request, room: str, need: Role) -> Response | None:
        """None if the request may open ``room`` as ``need`` (always, without a secret)."""
        if secret is None:
            return None
        try:
            verify(secret, token_of(request), room, need)
        except TokenRefused as exc:
            return refused_page(exc)
        return None

    async def ws_refused(ws: WebSocket, room: str, need: Role = "listener",
                         first: dict[str, Any] | None = None) -> bool:
        """Checks an accepted websocket's token (in its URL, or in its first message, read
        here unless given); closes it with 4401 and True if refused."""
        if secret is None:
            return False
        token = token_of(ws)
        if token is None:
            if first is None:
                first = await first_message(ws)
            if first.get("type") in ("auth", "hello"):
                token = str(first.get("token") or "") or None
        try:
            verify(secret, token, room, need)
        except TokenRefused as exc:
            if ws.client_state is WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close(code=4401, reason=exc.message[:120])
            return True
        return False

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = await connect(settings, wait_s=settings.redis_wait_s)
        app.state.registry = Registry(app.state.redis, settings.keys)
        app.state.speakers = Speakers(settings, app.state.redis, grace_s=speaker_grace_s)
        app.state.admin = AdminView(app.state.redis, settings.keys,
                                    lease_ttl_s=settings.lease_ttl_ms / 1000)
        try:
            yield
        finally:
            await app.state.speakers.close()
            await app.state.redis.aclose()

    async def checked(request: Request | WebSocket) -> tuple[str, str]:
        """The room and language of a request, validated, and the room registered."""
        room = request.path_params["room"]
        lang = request.query_params.get("lang", "")
        try:
            check_id(room, "room id")
        except InvalidId as exc:
            raise BadRequest(400, str(exc)) from None
        registry: Registry = request.app.state.registry
        if not await registry.room_exists(room):
            raise BadRequest(404, f"no room {room!r}")
        if not lang:
            raise MissingLang(400, "choose a language: add ?lang=es (or another code)")
        try:
            check_lang(lang)
        except InvalidId as exc:
            raise BadRequest(400, str(exc)) from None
        return room, lang

    async def index(request: Request) -> Response:
        if (refused := refusal(request, "*", "admin")) is not None:
            return refused
        rooms = await _rooms(request.app.state.registry)
        token = token_of(request)
        extra = f"&token={quote(token)}" if secret is not None and token else ""
        items = []
        for r in rooms:
            links = " ".join(
                f'<a href="/room/{html.escape(r["room"])}?lang={html.escape(lang)}'
                f'{html.escape(extra)}">'
                f"{html.escape(lang)}</a>" for lang in r["targets"]) or "(no languages yet)"
            items.append(f"<li>{html.escape(r['room'])}: {links}</li>")
        body = "".join(items) or "<li>no rooms yet</li>"
        return HTMLResponse(f"<!doctype html><title>s2st rooms</title><h1>Rooms</h1><ul>{body}</ul>",
                            headers=PAGE_HEADERS)

    async def api_rooms(request: Request) -> Response:
        if (refused := admin_refused(request)) is not None:
            return refused
        return JSONResponse({"rooms": await _rooms(request.app.state.registry)})

    def admin_refused(request: Request, *, header_only: bool = False) -> Response | None:
        """None if the request holds an admin token (always, without a secret); else a 401
        with the reason as JSON. ``header_only``: the token must be a Bearer header."""
        if secret is None:
            return None
        try:
            verify(secret, bearer_of(request) if header_only else token_of(request),
                   ANY_ROOM, "admin")
        except TokenRefused as exc:
            return JSONResponse({"error": exc.reason, "message": exc.message}, 401,
                                headers={"WWW-Authenticate": 'Bearer realm="s2st"',
                                         **PAGE_HEADERS})
        return None

    async def admin_page(request: Request) -> Response:
        if (refused := refusal(request, ANY_ROOM, "admin")) is not None:
            return refused
        return FileResponse(STATIC / "admin.html", headers=PAGE_HEADERS)

    async def admin_overview(request: Request) -> Response:
        if (refused := admin_refused(request)) is not None:
            return refused
        return JSONResponse(await request.app.state.admin.overview(), headers=PAGE_HEADERS)

    async def admin_create_room(request: Request) -> Response:
        if (refused := admin_refused(request, header_only=True)) is not None:
            return refused
        try:
            body = await json_body(request)
            room = check_id(str(body.get("room") or ""), "room id")
            langs = body.get("langs") or []
            if isinstance(langs, str):
                langs = [x for x in langs.replace(" ", ",").split(",") if x]
            if not isinstance(langs, list):
                raise BadRequest(400, "langs: a list of language codes, or a text like es,ca")
            langs = [check_lang(str(lang)) for lang in langs]
        except BadRequest as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        except InvalidId as exc:
            return JSONResponse({"error": str(exc)}, 400)
        registry: Registry = request.app.state.registry
        existed = await registry.room_exists(room)
        await registry.create_room(room, langs)
        request.app.state.admin.invalidate()
        log.info("room created from the operator view", room=room, langs=",".join(langs),
                 existed=existed)
        return JSONResponse({"room": room, "targets": await registry.room_targets(room),
                             "created": not existed}, 200 if existed else 201)

    async def admin_issue_token(request: Request) -> Response:
        if (refused := admin_refused(request, header_only=True)) is not None:
            return refused
        if secret is None:
            return JSONResponse({"error": "this server runs without S2ST_WEB_SECRET: it "
                                 "checks no tokens and cannot sign any"}, 409)
        try:
            body = await json_body(request)
            room = check_id(str(body.get("room") or ""), "room id")
            role = body.get("role", "listener")
            if role not in ("listener", "speaker"):
                raise BadRequest(400, "role: listener or speaker (admin links are made with "
                                 "`s2st room token --role admin`)")
            ttl_s = parse_ttl(str(body.get("ttl") or "8h"))
            lang = check_lang(str(body["lang"])) if body.get("lang") else None
            if not await request.app.state.registry.room_exists(room):
                raise BadRequest(404, f"no room {room!r}: create it first")
        except BadRequest as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        except ValueError as exc:  # (InvalidId is one)
            return JSONResponse({"error": str(exc)}, 400)
        from player_agent.web.tokens import room_link

        token, grant = mint(secret, room, role, ttl_s)
        base = os.environ.get("S2ST_WEB_URL") or str(request.base_url)
        log.info("token issued from the operator view", room=room, role=role,
                 token_id=grant.token_id, expires=expiry_text(grant))
        return JSONResponse({"link": room_link(base, room, role, token, lang), "room": room,
                             "role": role, "expires": grant.expires,
                             "expires_text": expiry_text(grant), "token_id": grant.token_id},
                            201, headers=PAGE_HEADERS)

    def checked_room_id(request: Request) -> str:
        room: str = request.path_params["room"]
        try:
            return check_id(room, "room id")
        except InvalidId as exc:
            raise BadRequest(400, str(exc)) from None

    async def room_page(request: Request) -> Response:
        try:
            room = checked_room_id(request)
            if (refused := refusal(request, room, "listener")) is not None:
                return refused
            await checked(request)
        except MissingLang as exc:
            targets = await request.app.state.registry.room_targets(room)
            if targets:
                token = token_of(request) if secret is not None else None
                extra = f"&token={quote(token)}" if token else ""
                return RedirectResponse(f"/room/{room}?lang={targets[0]}{extra}",
                                        headers=PAGE_HEADERS)
            return HTMLResponse(f"<!doctype html><p>{html.escape(exc.message)}</p>", exc.status)
        except BadRequest as exc:
            return HTMLResponse(f"<!doctype html><p>{html.escape(exc.message)}</p>", exc.status)
        return FileResponse(STATIC / "room.html", headers=PAGE_HEADERS)

    async def speak_page(request: Request) -> Response:
        """The browser speaker page (speaker or admin token)."""
        try:
            room = checked_room_id(request)
        except BadRequest as exc:
            return HTMLResponse(f"<!doctype html><p>{html.escape(exc.message)}</p>", exc.status)
        if (refused := refusal(request, room, "speaker")) is not None:
            return refused
        if not await request.app.state.registry.room_exists(room):
            return HTMLResponse(f"<!doctype html><p>no room {html.escape(room)!r}</p>", 404)
        return FileResponse(STATIC / "speak.html", headers=PAGE_HEADERS)

    async def speak_ws(ws: WebSocket) -> None:
        """The speaker page's link: ``hello`` (token, session to resume, speaker, language),
        then audio frames in; ``ready``, ``status``, captions and ``ended`` out."""
        await ws.accept()
        try:
            room = check_id(ws.path_params["room"], "room id")
            hello = await first_message(ws)
            if await ws_refused(ws, room, "speaker", hello):
                return
            if hello.get("type") != "hello":
                raise BadRequest(400, "the first message must be a hello")
            if not await ws.app.state.registry.room_exists(room):
                raise BadRequest(404, f"no room {room!r}")
            lang = check_lang(str(hello.get("lang") or "en"), allow_auto=True)
            speaker = str(hello.get("speaker") or "")[:80]
        except (BadRequest, InvalidId) as exc:
            status, message = (exc.status, exc.message) if isinstance(exc, BadRequest) else (
                400, str(exc))
            if ws.client_state is WebSocketState.CONNECTED:
                await ws.close(code=4000 + status, reason=message[:120])
            return
        speakers: Speakers = ws.app.state.speakers
        wanted = str(hello.get("session") or "")
        live = speakers.resume(room, wanted) if wanted else None
        resumed = live is not None
        if live is None:
            try:
                live = await speakers.start(room, lang, speaker)
            except Exception as exc:  # the VAD cannot load: no use retrying
                log.error("cannot start a browser speaker", room=room, error=str(exc))
                await ws.close(code=4500, reason=f"the server cannot capture: {exc}"[:120])
                return

        async def close_old() -> None:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close(code=4409, reason="this session continues on another link")

        connection = speakers.attach(live, close_old)
        await ws.send_json({"type": "ready", "session": live.session, "resumed": resumed,
                            "offset": live.source.next_offset, "speaker": live.ref.speaker,
                            "lang": live.ref.source_lang})
        captions = RoomFeed(ws.app.state.redis, settings.keys, room, None,
                            only_session=live.session)
        tasks = [asyncio.create_task(_speak_receive(ws, speakers, live)),
                 asyncio.create_task(_send(ws, _only_captions(captions))),
                 asyncio.create_task(_speak_status(ws, live))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(tasks, what="speaker page link")
            speakers.detach(live, connection)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close()

    async def healthz(request: Request) -> Response:
        await request.app.state.redis.ping()
        return JSONResponse({"ok": True})

    async def feed(ws: WebSocket) -> None:
        # accepted first so that the page sees why it is refused (a refused handshake is only
        # a 403); the token before anything about the room is told
        await ws.accept()
        try:
            room = check_id(ws.path_params["room"], "room id")
            if await ws_refused(ws, room):
                return
            room, lang = await checked(ws)
        except (BadRequest, InvalidId) as exc:
            status, message = (exc.status, exc.message) if isinstance(exc, BadRequest) else (
                400, str(exc))
            await ws.close(code=4000 + status, reason=message[:120])
            return
        registry: Registry = ws.app.state.registry
        await registry.add_listener(room, lang, LISTENER_TTL_S)
        room_feed = RoomFeed(ws.app.state.redis, settings.keys, room, lang,
                             hold_s=hold_s, deadline_s=deadline_s)
        tasks = [asyncio.create_task(_send(ws, room_feed)),
                 asyncio.create_task(_receive(ws)),
                 asyncio.create_task(_keep_listening(registry, room, lang))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(tasks, what="room page feed")
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close()

    routes = [
        Route("/", index),
        Route("/api/rooms", api_rooms),
        Route("/healthz", healthz),
        Route("/admin", admin_page),
        Route("/api/admin/overview", admin_overview),
        Route("/api/admin/rooms", admin_create_room, methods=["POST"]),
        Route("/api/admin/tokens", admin_issue_token, methods=["POST"]),
        Route("/room/{room}", room_page),
        Route("/room/{room}/speak", speak_page),
        WebSocketRoute("/ws/{room}", feed),
        WebSocketRoute("/ws/{room}/speak", speak_ws),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _rooms(registry: Registry) -> list[dict[str, Any]]:
    out = []
    for room in await registry.rooms():
        try:
            check_id(room, "room id")
        except InvalidId:
            continue
        sessions = await registry.sessions(room)
        out.append({"room": room, "targets": await registry.room_targets(room),
                    "active_sessions": sum(1 for s in sessions if s.active)})
    return out


async def json_body(request: Request) -> dict[str, Any]:
    """A POST's JSON object body (Content-Type application/json: no form can send one)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadRequest(415, "send a JSON body (Content-Type: application/json)")
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object")
    return body


async def first_message(ws: WebSocket) -> dict[str, Any]:
    """The websocket's first message as a JSON object ({} if none came in time or bad)."""
    with contextlib.suppress(TimeoutError, ValueError, KeyError, TypeError):
        message = await asyncio.wait_for(ws.receive(), AUTH_WAIT_S)
        first = json.loads(message.get("text") or "null")
        if isinstance(first, dict):
            return first
    return {}


async def _send(ws: WebSocket, messages: RoomFeed | AsyncIterator[Any]) -> None:
    source = messages.messages() if isinstance(messages, RoomFeed) else messages
    async for message in source:
        if isinstance(message, bytes):
            await ws.send_bytes(message)
        else:
            await ws.send_json(message)


async def _only_captions(feed: RoomFeed) -> AsyncIterator[dict[str, Any]]:
    async for message in feed.messages():
        if isinstance(message, dict) and message.get("type") == "caption":
            yield message


async def _speak_receive(ws: WebSocket, speakers: Speakers, live: LiveSpeaker) -> None:
    """Audio frames into the session until the page leaves or goes away."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            try:
                offset, pcm = parse_frame(data)
                live.source.push(offset, pcm, clock.now())
            except ValueError as exc:
                await ws.close(code=4400, reason=str(exc)[:120])
                return
            continue
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            if json.loads(message.get("text") or "null").get("type") == "leave":
                speakers.finish(live, "left")


async def _speak_status(ws: WebSocket, live: LiveSpeaker) -> None:
    """The session's figures every half second; ``ended`` (and a close) when it ends."""
    while live.task is not None and not live.task.done():
        await ws.send_json(live.status())
        await asyncio.wait({live.task}, timeout=0.5)
    await ws.send_json(live.status())
    await ws.send_json({"type": "ended", "session": live.session,
                        "reason": live.agent.end_reason or "error"})
    await ws.close(code=1000, reason="session ended")


async def _receive(ws: WebSocket) -> None:
    """Returns when the page goes away (the page sends nothing we need)."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _keep_listening(registry: Registry, room: str, lang: str) -> None:
    while True:
        await asyncio.sleep(LISTENER_TTL_S / 3)
        try:
            await registry.add_listener(room, lang, LISTENER_TTL_S)
        except Exception as exc:
            log.warning("listener refresh failed", room=room, lang=lang, error=str(exc))
