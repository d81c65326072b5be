"""Fixtures of the ops tests: the local Redis with a key prefix per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

LOCAL_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def local_url(local_redis: str) -> str:
    return local_redis


@pytest.fixture
def prefix(local_url: str) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    name = "tops" + uuid.uuid4().hex[:10]
    yield name
    client = redis.Redis.from_url(local_url)
    keys = list(client.scan_iter(match=name + ":*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


