"""The one way a command is configured and run: settings classes, flags made from them, and
the shared entry that runs an async main with one-line errors and fixed exit codes.

Settings are pydantic-settings ``BaseSettings`` classes (``S2ST_*`` environment variables);
:func:`add_settings_flags` makes one ``--flag`` per field from its name, type and
description, and :func:`settings_from_args` builds the settings with a flag winning over its
variable and the variable over the default. A field whose flag is not its name says so in its
metadata: ``Field(..., json_schema_extra={"flag": "--threads"})``.

:func:`run_async` is what every long-running command ends in: it validates the bus
settings, configures logging, runs ``main`` and turns the expected failures into one line
and an exit status (Redis unreachable: 3, a bad id: 2, Ctrl-C: 130). Signal handling is the
worker's own (``Worker.run(handle_signals=True)``); this entry makes a Ctrl-C that reaches
``asyncio.run`` exit 130 instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import types
import typing
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from bus.connection import RedisUnavailable
from bus.ids import InvalidId
from bus.logs import configure_logging
from bus.settings import BusSettings, SettingsError

S = TypeVar("S", bound=BaseSettings)

EXIT_USAGE = 2  # bad flags, bad settings, a bad id
EXIT_REDIS = 3  # Redis unreachable
EXIT_INTERRUPTED = 130


__all__ = ["SettingsError", "add_settings_flags", "env_from_args", "flag_values",
           "run_async", "settings_from_args", "unset_text"]


# -- flags from settings classes ------------------------------------------------------------


def unset_text(description: str) -> Any:
    """A settings field of text, unset (None) by default: a variable whose reader checks it
    and applies its own default (the MT and TTS workers' settings)."""
    return Field(None, description=description)


def _extra(info: FieldInfo) -> Mapping[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, Mapping) else {}


def flag_name(name: str, info: FieldInfo) -> str:
    """The flag of a field: its ``flag`` metadata, else ``--`` and the name with dashes."""
    return str(_extra(info).get("flag") or "--" + name.replace("_", "-"))


def env_name(cls: type[BaseSettings], name: str) -> str:
    """The environment variable of a field (the class's prefix and the name, upper case)."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    return (prefix + name).upper()


def _dest(cls: type[BaseSettings], name: str, dest_prefix: str | None) -> str:
    """Where a flag's value lands in the namespace: by default a name of the class's own (two
    classes may have fields of one name); ``dest_prefix=""``: the field's name itself."""
    prefix = f"_settings_{cls.__name__}_" if dest_prefix is None else dest_prefix
    return prefix + name


def _strip_optional(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def add_settings_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type[BaseSettings],
    *,
    title: str | None = None,
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    dest_prefix: str | None = None,
) -> None:
    """One flag per field of ``cls``: a bool is a switch, a Literal offers its choices, any
    other value is taken as text and validated with the settings (so a bad one is reported
    the same way whether it came from a flag or a variable). The help names the variable and
    the default. ``skip`` (or ``json_schema_extra={"no_flag": True}``) leaves fields out, ``only``
    keeps just those (a class's flags may be spread over several groups)."""
    target: Any = parser
    if title is not None and isinstance(parser, argparse.ArgumentParser):
        target = parser.add_argument_group(title)
    for name, info in cls.model_fields.items():
        if name in skip or _extra(info).get("no_flag") or (only is not None and name not in only):
            continue
        kind = _strip_optional(info.annotation)
        env = env_name(cls, name)
        default = info.get_default(call_default_factory=True)
        shown = "" if default is None or default is False or default == "" else f" (default {default})"
        text = f"{env}: {info.description or name.replace('_', ' ')}{shown}"
        options: dict[str, Any] = {"dest": _dest(cls, name, dest_prefix), "default": None,
                                   "help": text.replace("%", "%%")}
        if kind is bool:
            options["action"] = "store_true"
        else:
            if get_origin(kind) is Literal:
                options["choices"] = [str(c) for c in get_args(kind)]
            else:
                options["metavar"] = str(_extra(info).get("metavar") or "VALUE")
        target.add_argument(flag_name(name, info), **options)


def flag_values(cls: type[BaseSettings], args: argparse.Namespace | None,
                dest_prefix: str | None = None) -> dict[str, Any]:
    """The fields of ``cls`` given as flags in ``args`` (not the ones left out)."""
    if args is None:
        return {}
    values = {}
    for name in cls.model_fields:
        value = getattr(args, _dest(cls, name, dest_prefix), None)
        if value is not None:
            values[name] = value
    return values


def env_from_args(
    cls: type[BaseSettings], args: argparse.Namespace | None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment (``os.environ`` unless ``env``) with each flag of ``cls`` given in
    ``args`` written into its variable: for settings whose values are read by a
    ``from_env(mapping)`` that names the variable in its errors (workers/mt, workers/tts)."""
    import os

    out = dict(os.environ if env is None else env)
    for name, value in flag_values(cls, args).items():
        out[env_name(cls, name)] = str(value)
    return out


def settings_from_args(
    cls: type[S], args: argparse.Namespace | None = None, *, program: str = "s2st",
    dest_prefix: str | None = None, **overrides: Any,
) -> S:
    """``cls`` from flags (first), ``S2ST_*`` variables, then defaults; explicit
    ``overrides`` (not None) win over all. Invalid: prints one line per bad setting, naming
    its flag and variable, and exits 2 (:class:`SettingsError`)."""
    values = flag_values(cls, args, dest_prefix)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**values)
    except ValidationError as exc:
        flags = {n for n in cls.model_fields
                 if args is not None and hasattr(args, _dest(cls, n, dest_prefix))}
        raise settings_error(cls, exc, program, flags) from None


def settings_error(cls: type[BaseSettings], exc: ValidationError, program: str = "s2st",
                   flags: set[str] | None = None) -> SettingsError:
    """Prints what is wrong, one line per setting (naming its flag where the command has
    one: ``flags``, the fields that do, all if None); returns the exception to raise."""
    lines = [f"{program}: invalid settings:"]
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        info = cls.model_fields.get(name)
        if info is None:
            where = "settings"
        elif flags is None or name in flags:
            where = f"{flag_name(name, info)} / {env_name(cls, name)}"
        else:
            where = env_name(cls, name)
        lines.append(f"  {where}: {err['msg']}")
    print("\n".join(lines), file=sys.stderr)
    return SettingsError(EXIT_USAGE)


# -- the shared entry -------------------------------------------------------------------------


def run_async(
    args: argparse.Namespace, main: Callable[[BusSettings], Coroutine[Any, Any, int | None]]
) -> int:
    """Validate settings, configure logs, run ``main``; one-line errors for the expected failures."""
    settings = settings_from_args(BusSettings, args, dest_prefix="")
    configure_logging(settings.log_format, settings.log_level)
    try:
        return int(asyncio.run(main(settings)) or 0)
    except RedisUnavailable as exc:
        print(f"s2st: {exc}", file=sys.stderr)
        return EXIT_REDIS
    except InvalidId as exc:
        print(f"s2st: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
