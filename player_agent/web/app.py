"""The web server of `s2st web`: a page per room and a websocket feed per page.

Routes:

- ``GET /``                      the rooms and their languages, as links
- ``GET /api/rooms``             the same as JSON
- ``GET /room/{room}?lang=es``   the live page (static HTML + JS, no build step)
- ``WS  /ws/{room}?lang=es``     the page's feed (see feed.py)
- ``GET /healthz``               Redis reachable

Room and language come from the URL and are checked (``check_id``, ``check_lang``) before
any key is built from them; a room that is not registered is a 404 (a websocket is closed
with code 4404, a bad id or language with 4400).  An open page keeps its language among
the room's targets (``Registry.add_listener``), like a player.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from bus.connection import connect
from bus.ids import InvalidId, check_id, check_lang
from bus.logs import get_logger
from bus.registry import Registry
from bus.settings import BusSettings
from bus.tasks import cancel_and_wait
from player_agent.web.feed import RoomFeed

log = get_logger("player.web")
STATIC = Path(__file__).resolve().parent / "static"
LISTENER_TTL_S = 30.0


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MissingLang(BadRequest):
    pass


def create_app(settings: BusSettings, *, hold_s: float = 0.15, deadline_s: float = 1.0) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = await connect(settings, wait_s=settings.redis_wait_s)
        app.state.registry = Registry(app.state.redis, settings.keys)
        try:
            yield
        finally:
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
        rooms = await _rooms(request.app.state.registry)
        items = []
        for r in rooms:
            links = " ".join(
                f'<a href="/room/{html.escape(r["room"])}?lang={html.escape(lang)}">'
                f"{html.escape(lang)}</a>" for lang in r["targets"]) or "(no languages yet)"
            items.append(f"<li>{html.escape(r['room'])}: {links}</li>")
        body = "".join(items) or "<li>no rooms yet</li>"
        return HTMLResponse(f"<!doctype html><title>s2st rooms</title><h1>Rooms</h1><ul>{body}</ul>")

    async def api_rooms(request: Request) -> Response:
        return JSONResponse({"rooms": await _rooms(request.app.state.registry)})

    async def room_page(request: Request) -> Response:
        try:
            await checked(request)
        except MissingLang as exc:
            room = request.path_params["room"]  # checked, and the room exists
            targets = await request.app.state.registry.room_targets(room)
            if targets:
                return RedirectResponse(f"/room/{room}?lang={targets[0]}")
            return HTMLResponse(f"<!doctype html><p>{html.escape(exc.message)}</p>", exc.status)
        except BadRequest as exc:
            return HTMLResponse(f"<!doctype html><p>{html.escape(exc.message)}</p>", exc.status)
        return FileResponse(STATIC / "room.html", headers={"Cache-Control": "no-store"})

    async def healthz(request: Request) -> Response:
        await request.app.state.redis.ping()
        return JSONResponse({"ok": True})

    async def feed(ws: WebSocket) -> None:
        try:
            room, lang = await checked(ws)
        except BadRequest as exc:
            # accepted first so that the page sees why (a refused handshake is only a 403)
            await ws.accept()
            await ws.close(code=4000 + exc.status, reason=exc.message[:120])
            return
        await ws.accept()
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
        Route("/room/{room}", room_page),
        WebSocketRoute("/ws/{room}", feed),
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


async def _send(ws: WebSocket, room_feed: RoomFeed) -> None:
    async for message in room_feed.messages():
        if isinstance(message, bytes):
            await ws.send_bytes(message)
        else:
            await ws.send_json(message)


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
