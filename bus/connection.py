"""Opening a Redis (or Redis Cluster) connection, with a clear error if it is not there."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bus.settings import BusSettings

log = structlog.get_logger(__name__)

AnyRedis = Any  # redis.asyncio.Redis or RedisCluster: same command surface for what we use


# what a Redis not up yet answers: no connection, a timeout, LOADING (a ConnectionError in
# redis-py), a cluster not reachable or not formed yet
_NOT_YET = (RedisConnectionError, RedisTimeoutError, OSError, RedisClusterException,
            ClusterDownError, TryAgainError)


class RedisUnavailable(RuntimeError):
    """Redis could not be reached or refused us at start."""


def redacted_url(url: str) -> str:
    """The URL with its credentials hidden, for messages and status screens."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def make_client(settings: BusSettings) -> AnyRedis:
    """A client for the configured URL (no I/O yet)."""
    common: dict[str, Any] = {
        "decode_responses": False,
        "health_check_interval": 10,
        # a dropped connection (Redis restarted, failover) is retried on a fresh one
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **common)
    if not settings.redis_url.startswith("unix://"):  # (keepalive is a TCP option)
        common["socket_keepalive"] = True
    return aioredis.Redis.from_url(settings.redis_url, **common)


async def connect(settings: BusSettings, *, wait_s: float = 0.0) -> AnyRedis:
    """Connect and PING; raises RedisUnavailable with the URL (password hidden) on failure.

    ``wait_s``: a Redis that does not answer yet (not started, restarting, loading its AOF)
    is asked again for up to this long before giving up: a worker started with or just
    after its Redis comes up with it. A refused login or any other error fails at once."""
    deadline = time.monotonic() + wait_s
    delay = 0.1
    waiting = False
    while True:
        client = make_client(settings)
        try:
            await client.ping()
        except AuthenticationError as exc:
            await _close(client)
            raise RedisUnavailable(
                f"Redis at {redacted_url(settings.redis_url)} refused the login: {exc}") from None
        except _NOT_YET as exc:
            await _close(client)
            if time.monotonic() + delay > deadline:
                waited = f" (waited {wait_s:g} s)" if waiting else ""
                raise RedisUnavailable(
                    f"cannot reach Redis at {redacted_url(settings.redis_url)}{waited}: {exc}. "
                    "Start one (redis-server) or set S2ST_REDIS_URL / --redis-url."
                ) from None
            if not waiting:
                waiting = True
                log.warning("Redis does not answer yet; waiting for it",
                            url=redacted_url(settings.redis_url), wait_s=wait_s, error=str(exc))
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)
        except RedisError as exc:
            await _close(client)
            raise RedisUnavailable(
                f"Redis at {redacted_url(settings.redis_url)} answered with an error: {exc}"
            ) from None
        except asyncio.CancelledError:
            await _close(client)
            raise
        else:
            if waiting:
                log.info("Redis answers", url=redacted_url(settings.redis_url))
            return client


async def _close(client: AnyRedis) -> None:
    with contextlib.suppress(Exception):
        await client.aclose()
