"""Player and web fixtures: a Redis namespace per test and speech events from real clips."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bus.settings import BusSettings
from bus.testing import scratch_client

LOCAL_URL = "redis://127.0.0.1:6379/0"


def player_settings(**kw: Any) -> BusSettings:
    values: dict[str, Any] = dict(redis_url=LOCAL_URL, key_prefix="tp" + uuid.uuid4().hex[:10],
                                  log_level="warning")
    values.update(kw)
    return BusSettings(**values)


@pytest.fixture
def settings(local_redis: str) -> BusSettings:
    return player_settings()


@pytest.fixture
async def client(settings: BusSettings) -> AsyncIterator[Any]:
    async with scratch_client(settings) as r:
        yield r
