"""The local stack's configuration: rooms, worker counts and per-profile worker settings.

A small TOML or YAML file (``ops/stack.toml`` is the default and the example)::

    [rooms]
    demo = ["es"]            # room -> pinned target languages
    [workers]
    asr = 1                  # processes per stage
    [profiles.cpu]
    S2ST_ASR_MODEL = "tiny.en"

Profile values become the workers' ``S2ST_*`` environment; a variable already set in the
environment wins, so one run can override a profile without editing the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.ids import InvalidId, check_id, check_lang
from pipeline import PIPELINE

DEFAULT_CONFIG = Path(__file__).resolve().parent / "stack.toml"
STAGES = PIPELINE.workers  # the consumer stages, along the flow (asr, mt, tts)
MAX_WORKERS = 64


class ConfigError(ValueError):
    """The stack configuration file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class StackConfig:
    rooms: dict[str, list[str]] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 1))
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = "<built-in>"

    def profile_env(self, profile: str) -> dict[str, str]:
        """The ``S2ST_*`` settings of ``profile`` (ConfigError if it is not defined)."""
        if profile not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ConfigError(f"{self.source}: no profile {profile!r} (defined: {known})")
        return dict(self.profiles[profile])

    def with_workers(self, counts: Mapping[str, int | None]) -> StackConfig:
        """A copy with some worker counts replaced (None keeps the configured count)."""
        merged = dict(self.workers)
        for stage, count in counts.items():
            if count is not None:
                merged[stage] = _count(stage, count, "command line")
        return StackConfig(self.rooms, merged, self.profiles, self.source)

    def with_room(self, room: str, langs: list[str]) -> StackConfig:
        """A copy where ``room`` also targets ``langs``."""
        rooms = {k: list(v) for k, v in self.rooms.items()}
        have = rooms.setdefault(_room(room, "command line"), [])
        have.extend(lang for lang in (_lang(x, "command line") for x in langs) if lang not in have)
        return StackConfig(rooms, dict(self.workers), self.profiles, self.source)


def load_config(path: str | Path | None = None) -> StackConfig:
    """Read and validate a TOML (``.toml``) or YAML (``.yaml``/``.yml``) stack file."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the stack config {file}: {exc.strerror or exc}") from None
    return parse_config(text, file.suffix.lower(), str(file))


def parse_config(text: str, suffix: str, source: str = "<string>") -> StackConfig:
    data = _parse(text, suffix, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table at the top level")
    unknown = set(data) - {"rooms", "workers", "profiles"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(sorted(unknown))} "
                          "(expected rooms, workers, profiles)")
    return StackConfig(
        rooms=_rooms(data.get("rooms", {}), source),
        workers=_workers(data.get("workers", {}), source),
        profiles=_profiles(data.get("profiles", {}), source),
        source=source,
    )


def _parse(text: str, suffix: str, source: str) -> Any:
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{source}: YAML needs PyYAML (pip install pyyaml), "
                              "or write the file as TOML") from None
        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    raise ConfigError(f"{source}: unknown config format {suffix!r} (use .toml, .yaml or .yml)")


def _rooms(raw: Any, source: str) -> dict[str, list[str]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [rooms] must map room ids to lists of languages")
    rooms: dict[str, list[str]] = {}
    for room, langs in raw.items():
        if isinstance(langs, str):
            langs = [x.strip() for x in langs.split(",") if x.strip()]
        if not isinstance(langs, list):
            raise ConfigError(f"{source}: room {room!r}: expected a list of languages")
        rooms[_room(str(room), source)] = [_lang(str(x), source) for x in langs]
    return rooms


def _workers(raw: Any, source: str) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [workers] must map stages to process counts")
    unknown = set(raw) - set(STAGES)
    if unknown:
        raise ConfigError(f"{source}: [workers]: unknown stage(s) {', '.join(sorted(unknown))} "
                          f"(expected {', '.join(STAGES)})")
    counts = dict.fromkeys(STAGES, 1)
    counts.update({stage: _count(stage, n, source) for stage, n in raw.items()})
    return counts


def _profiles(raw: Any, source: str) -> dict[str, dict[str, str]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [profiles] must map profile names to settings")
    profiles: dict[str, dict[str, str]] = {}
    for name, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: profile {name!r}: expected a table of S2ST_* settings")
        env: dict[str, str] = {}
        for key, value in values.items():
            if not str(key).startswith("S2ST_"):
                raise ConfigError(f"{source}: profile {name!r}: {key!r} is not an S2ST_* setting")
            if isinstance(value, (dict, list)):
                raise ConfigError(f"{source}: profile {name!r}: {key} must be a plain value")
            env[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
        profiles[str(name)] = env
    return profiles


def _count(stage: str, value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WORKERS:
        raise ConfigError(f"{source}: workers.{stage} must be an integer 0..{MAX_WORKERS}, "
                          f"not {value!r}")
    return value


def _room(room: str, source: str) -> str:
    try:
        return check_id(room, "room id")
    except InvalidId as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _lang(lang: str, source: str) -> str:
    try:
        return check_lang(lang)
    except InvalidId as exc:
        raise ConfigError(f"{source}: {exc}") from None
