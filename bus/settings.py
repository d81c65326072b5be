"""Settings shared by every process, from S2ST_* environment variables and flags.

Validated at start: a bad value stops the process with a message naming the
variable and what is wrong, before anything connects anywhere.
"""

from __future__ import annotations

import argparse
import os
import socket
import uuid
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.keys import Keys


class BusSettings(BaseSettings):
    """How a process reaches Redis and how the consumer runtime behaves."""

    model_config = SettingsConfigDict(env_prefix="S2ST_", extra="ignore", validate_default=True)

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis://, rediss:// (TLS) or unix:// URL; user and password may be in the URL",
    )
    redis_cluster: bool = Field(False, description="connect as a Redis Cluster client")
    redis_wait_s: float = Field(
        30.0, ge=0, description="a worker or the web server starting waits this long for a "
        "Redis that does not answer yet (starting with it, restarting, loading its AOF); "
        "0 = fail at once"
    )
    key_prefix: str = Field("s2st", description="prefix of every key")
    worker_id: str = Field("", description="consumer name; default host-pid-random")
    lease_ttl_ms: int = Field(3000, ge=300, description="a dead worker's sessions move after this")
    heartbeat_ms: int = Field(1000, ge=50, description="lease renewal period")
    discovery_ms: int = Field(500, ge=50, description="registry rescan period")
    block_ms: int = Field(100, ge=1, le=5000, description="BLOCK time of the wait on the bells")
    poll_ms: int = Field(
        500, ge=10, description="look at every owned stream at least this often, rung or not "
        "(entries added without ringing the bell, e.g. by hand, are seen within this)"
    )
    batch_count: int = Field(100, ge=1, le=10_000, description="XREADGROUP COUNT")
    max_inflight: int = Field(200, ge=1, description="entries read but not committed, per stream")
    max_attempts: int = Field(3, ge=1, le=100, description="failures before an entry is dead-lettered")
    retry_backoff_ms: int = Field(100, ge=0, description="pause before retrying a failed entry")
    handler_timeout_s: float = Field(120.0, gt=0, description="a handler call taking longer fails")
    max_event_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="larger entries are dead-lettered unread"
    )
    retention_s: float = Field(
        3600.0, ge=0, description="streams are trimmed to this window (XADD MINID ~) and an "
        "ended session's streams are deleted one window after its end; 0 = keep"
    )
    maxlen: int = Field(
        0, ge=0, description="with a retention of 0: cap streams at about this many entries "
        "instead (XADD MAXLEN ~); 0 = no cap"
    )
    session_timeout_s: float = Field(
        60.0, gt=0, description="a session with no heartbeat for this long is ended"
    )
    clock_skew_s: float = Field(
        0.0, ge=-86400, le=86400, description="tests and experiments: shift this process's "
        "reading of its own clock by this many seconds (as a host whose clock is that far "
        "off); timestamps still use Redis's time, measured at connect (bus/clock.py)"
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus /metrics port; 0 = any free port; unset = off"
    )
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("redis_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        Keys(v)  # raises on braces, colons, spaces
        return v

    @field_validator("worker_id")
    @classmethod
    def _worker_id(cls, v: str) -> str:
        return v or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    @model_validator(mode="after")
    def _timing(self) -> BusSettings:
        if self.heartbeat_ms * 2 > self.lease_ttl_ms:
            raise ValueError(
                f"heartbeat_ms ({self.heartbeat_ms}) must be at most half of lease_ttl_ms "
                f"({self.lease_ttl_ms}), or leases expire between renewals"
            )
        return self

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix, cluster=self.redis_cluster)


class SettingsError(SystemExit):
    """Raised (and exits with status 2) when settings do not validate."""


# the bus settings every command that talks to Redis takes as flags (the others: variables)
BUS_FLAGS = ("redis_url", "redis_cluster", "key_prefix", "worker_id", "metrics_port",
             "log_format", "log_level")


def add_bus_options(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every command that talks to Redis (each overrides its S2ST_* variable)."""
    from bus.command import add_settings_flags

    add_settings_flags(parser, BusSettings, title="bus (each flag overrides its S2ST_* variable)",
                       only=BUS_FLAGS, dest_prefix="")


def settings_from_args(args: argparse.Namespace | None = None, **overrides: Any) -> BusSettings:
    """Flags, then environment, then defaults (explicit overrides win over all); exits 2 with
    a clear message if invalid (bus/command.py)."""
    from bus.command import settings_from_args as from_args

    return from_args(BusSettings, args, dest_prefix="", **overrides)
