"""Opening a Redis (or Redis Cluster) connection, with a clear error if it is not there."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bus import clock
from bus.settings import BusSettings

log = structlog.get_logger(__name__)

AnyRedis = Any  # redis.asyncio.Redis or RedisCluster: same command surface for what we use


# what a Redis not up yet answers: no connection, a timeout, LOADING (a ConnectionError in
# redis-py), a cluster not reachable or not formed yet
_NOT_YET = (RedisConnectionError, RedisTimeoutError, OSError, RedisClusterException,
            ClusterDownError, TryAgainError)


# what a refused login says when only the text of the error is left (a cluster client wraps
# the error of its startup nodes in a RedisClusterException, with it as the cause)
_REFUSED_LOGIN = ("WRONGPASS", "NOAUTH", "invalid username-password pair",
                  "Authentication required")


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
    after its Redis comes up with it. A refused login (also the one a cluster client wraps in
    a RedisClusterException) or any other error fails at once."""
    deadline = time.monotonic() + wait_s
    delay = 0.1
    waiting = False
    while True:
        client = make_client(settings)
        try:
            await client.ping()
        except AuthenticationError as exc:
            await _close(client)
            raise _login_refused(settings, exc) from None
        except _NOT_YET as exc:
            await _close(client)
            refusal = _refusal_in(exc)
            if refusal is not None:  # (a cluster: the refusal is wrapped, it is not "not up")
                raise _login_refused(settings, refusal) from None
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
            try:
                await sync_clock(client, settings)
            except BaseException:
                await _close(client)
                raise
            return client


async def sync_clock(client: AnyRedis, settings: BusSettings) -> None:
    """Measure this process's clock against Redis's (unless measured lately) and keep it
    measured in the background: every timestamp on the bus is in Redis's time (bus/clock.py).
    Never fails: without a measurement the clock stays this host's."""
    skew_changed = settings.clock_skew_s != clock.skew()
    if skew_changed:
        clock.set_skew(settings.clock_skew_s)
    node_of: Callable[[AnyRedis], Any] | None = None
    if settings.redis_cluster:
        # one node's clock for every process: the primary of the rooms set's slot
        rooms_key = settings.keys.rooms
        node_of = lambda c: c.get_node_from_key(rooms_key)  # noqa: E731
    await clock.sync(client, node=node_of(client) if node_of else None,
                     max_age_s=0.0 if skew_changed else clock.REFRESH_S)
    clock.keep_synced(lambda: make_client(settings), node_of=node_of)


def _refusal_in(exc: BaseException) -> BaseException | None:
    """The refused login (wrong password, unknown or disabled user) inside ``exc`` or its
    causes, or None. A cluster client reports it as a RedisClusterException ("cannot be
    connected") whose cause is the AuthenticationError: that is no cluster still starting."""
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (AuthenticationError, AuthorizationError)) or any(
                mark in str(err) for mark in _REFUSED_LOGIN):
            return err
        err = err.__cause__ or err.__context__
    return None


def _login_refused(settings: BusSettings, refusal: BaseException) -> RedisUnavailable:
    return RedisUnavailable(
        f"Redis at {redacted_url(settings.redis_url)} refused the login: {refusal}")


async def _close(client: AnyRedis) -> None:
    with contextlib.suppress(Exception):
        await client.aclose()
