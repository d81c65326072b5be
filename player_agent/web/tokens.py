"""Room access tokens: who may open a room's pages (``s2st room token``, ``s2st web``).

A token is ``base64url(payload JSON) "." base64url(HMAC-SHA256(secret, first part))``; the
payload holds the room (``*`` for admin tokens: every room), the role, the expiry (epoch
seconds) and a random token id. The secret is ``S2ST_WEB_SECRET``, shared by whoever mints
tokens and the web servers that check them. Standard library only: ops and the web server
both import this module.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from bus.ids import check_id

Role = Literal["listener", "speaker", "admin"]
ROLES: tuple[Role, ...] = ("listener", "speaker", "admin")
# what a token of each role may open: a speaker may also listen, an admin do anything
GRANTS: dict[Role, frozenset[Role]] = {
    "listener": frozenset({"listener"}),
    "speaker": frozenset({"listener", "speaker"}),
    "admin": frozenset(ROLES),
}
SECRET_ENV = "S2ST_WEB_SECRET"
MIN_SECRET_CHARS = 32
MAX_TTL_S = 90 * 86400
ANY_ROOM = "*"
_TTL = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']+")


class SecretError(ValueError):
    """S2ST_WEB_SECRET is missing or too short (the message says what to do)."""


class TokenRefused(Exception):
    """A request's token does not open what it asks for; ``message`` is for the person."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # missing | invalid | expired | room | role
        self.message = message


@dataclass(frozen=True)
class Grant:
    room: str
    role: Role
    expires: int
    token_id: str


def check_secret(secret: str | None) -> bytes:
    if not secret:
        raise SecretError(
            f"{SECRET_ENV} is not set: make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` and give the same "
            "value to `s2st web` and to whoever runs `s2st room token`")
    if len(secret) < MIN_SECRET_CHARS:
        raise SecretError(f"{SECRET_ENV} is too short ({len(secret)} characters; at least "
                          f"{MIN_SECRET_CHARS})")
    return secret.encode()


def secret_from_env() -> bytes:
    return check_secret(os.environ.get(SECRET_ENV))


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def parse_ttl(text: str) -> float:
    """``8h``, ``30m``, ``90s``, ``2d`` or plain seconds; positive, at most 90 days."""
    match = _TTL.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"--ttl: expected e.g. 8h, 30m, 90s or 2d, got {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < seconds <= MAX_TTL_S:
        raise ValueError(f"--ttl must be more than 0 and at most 90d, got {text!r}")
    return seconds


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def mint(secret: bytes, room: str, role: Role, ttl_s: float, *, now: float | None = None
         ) -> tuple[str, Grant]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    room = ANY_ROOM if role == "admin" else check_id(room, "room id")
    grant = Grant(room, role, int((time.time() if now is None else now) + ttl_s),
                  secrets.token_urlsafe(9))
    payload = {"v": 1, "room": grant.room, "role": grant.role, "exp": grant.expires,
               "id": grant.token_id}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_sign(secret, body)}", grant


def verify(secret: bytes, token: str | None, room: str, need: Role, *,
           now: float | None = None) -> Grant:
    """The token's grant if it opens ``room`` for ``need``; else :class:`TokenRefused`."""
    if not token:
        raise TokenRefused("missing", "This page needs an access link with a token: ask the "
                           "organizer of the room for one.")
    invalid = TokenRefused("invalid", "This access token is not valid (damaged, tampered "
                           "with, or from another server): ask the organizer for a new link.")
    body, dot, signature = token.partition(".")
    if not dot or not hmac.compare_digest(signature.encode(), _sign(secret, body).encode()):
        raise invalid
    try:
        payload = json.loads(_unb64(body))
        grant = Grant(str(payload["room"]), cast(Role, payload["role"]), int(payload["exp"]),
                      str(payload["id"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid from None
    if grant.role not in ROLES:
        raise invalid
    if (time.time() if now is None else now) >= grant.expires:
        raise TokenRefused("expired", f"This access token expired at {expiry_text(grant)}: "
                           "ask the organizer for a new link.")
    # the role first: a room token on an admin page (room ``*``) is told it is no admin's
    if need not in GRANTS[grant.role]:
        raise TokenRefused("role", f"A {grant.role} token does not let you {_VERB[need]}: ask "
                           f"the organizer for {'an' if need == 'admin' else 'a'} {need} link.")
    if grant.role != "admin" and grant.room != room:
        raise TokenRefused("room", f"This access token is for room {grant.room!r}, not "
                           f"{room!r}.")
    return grant


_VERB: dict[Role, str] = {"listener": "listen", "speaker": "speak",
                          "admin": "administer the rooms"}


def expiry_text(grant: Grant) -> str:
    return datetime.fromtimestamp(grant.expires, UTC).strftime("%Y-%m-%d %H:%M UTC")


def redact(text: str) -> str:
    """``token=...`` in a URL or a log line, its value replaced by ``***``."""
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


class RedactTokens(logging.Filter):
    """Takes token values out of log records (uvicorn logs request paths with their query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) and "token=" in a else a
                                for a in record.args)
        return True


def redact_server_logs(names: tuple[str, ...] = ("uvicorn", "uvicorn.error", "uvicorn.access")
                       ) -> None:
    """Installs :class:`RedactTokens` on the web server's loggers (once)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def room_link(base_url: str, room: str | None, role: str, token: str,
              lang: str | None = None) -> str:
    """The link a token is handed out as (the page strips the token from the address bar)."""
    base = base_url.rstrip("/")
    query = f"lang={lang}&" if lang else ""
    if role == "admin":  # the operator view (every room)
        return f"{base}/admin?token={token}"
    path = f"/room/{room}/speak" if role == "speaker" else f"/room/{room}"
    return f"{base}{path}?{query}token={token}"
