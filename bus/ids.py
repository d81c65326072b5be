"""Validation of the names that end up inside Redis keys.

Room and session ids, stage and stream family names and language codes are
placed verbatim into keys such as ``s2st:{room}:audio:session``.  A character
like ``{``, ``}``, ``:`` or whitespace could move a key to another hash slot or
let one room's key collide with another's, so every id is checked against a
strict pattern before it reaches a key.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


class InvalidId(ValueError):
    """An id or name that may not be used in a Redis key."""


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a valid room or session id, else raise InvalidId."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidId(
            f"invalid {what} {value!r}: use 1-64 characters from A-Z a-z 0-9 _ . - "
            "starting with a letter or digit"
        )
    return value


def check_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a valid stage or stream family name."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidId(f"invalid {what} {value!r}: use lowercase a-z 0-9 _ (max 32), letter first")
    return value


def check_lang(value: str, *, allow_auto: bool = False) -> str:
    """Return ``value`` if it is a language code such as ``en``, ``es`` or ``pt-BR``."""
    if allow_auto and value == "auto":
        return value
    if not isinstance(value, str) or not _LANG.fullmatch(value):
        raise InvalidId(f"invalid language code {value!r}: expected e.g. en, es, ca, pt-BR")
    return value


def _room(v: str) -> str:
    return check_id(v, "room id")


def _session(v: str) -> str:
    return check_id(v, "session id")


def _lang(v: str) -> str:
    return check_lang(v)


def _source_lang(v: str) -> str:
    return check_lang(v, allow_auto=True)


RoomId = Annotated[str, AfterValidator(_room)]
SessionId = Annotated[str, AfterValidator(_session)]
Lang = Annotated[str, AfterValidator(_lang)]
SourceLang = Annotated[str, AfterValidator(_source_lang)]
