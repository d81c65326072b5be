"""Opening a Redis (or Redis Cluster) connection, with a clear error if it is not there."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bus.settings import BusSettings

AnyRedis = Any  # redis.asyncio.Redis or RedisCluster: same command surface for what we use


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


async def connect(settings: BusSettings) -> AnyRedis:
    """Connect and PING; raises RedisUnavailable with the URL (password hidden) on failure."""
    client = make_client(settings)
    try:
        await client.ping()
    except AuthenticationError as exc:
        await client.aclose()
        raise RedisUnavailable(f"Redis at {redacted_url(settings.redis_url)} refused the login: {exc}") from None
    except (RedisError, OSError) as exc:
        try:
            await client.aclose()
        except Exception:
            pass
        raise RedisUnavailable(
            f"cannot reach Redis at {redacted_url(settings.redis_url)}: {exc}. "
            "Start one (redis-server) or set S2ST_REDIS_URL / --redis-url."
        ) from None
    return client
