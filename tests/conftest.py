"""Shared fixtures: the development speech set and a per-test Redis namespace."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
SPEECH_DIR = Path(os.environ.get("S2ST_SPEECH_DIR", ROOT.parent / "shared" / "data" / "speech"))


def load_manifest() -> list[dict[str, Any]]:
    path = SPEECH_DIR / "manifest.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        row["path"] = SPEECH_DIR / row["audio"]
    return rows


@pytest.fixture(scope="session")
def local_redis() -> str:
    """The URL of the local Redis the tests use (each under a key prefix of its own); where
    none answers, the test fails saying how to start one."""
    import redis

    try:
        redis.Redis.from_url(LOCAL_REDIS_URL).ping()
    except redis.exceptions.ConnectionError:
        pytest.fail("no Redis at 127.0.0.1:6379 (start one: redis-server --daemonize yes)")
    return LOCAL_REDIS_URL


@pytest.fixture
def scratch_prefix(local_redis: str) -> Iterator[Callable[[str], str]]:
    """Makes key prefixes of this test alone on the local Redis (``tag`` and random hex);
    every key beginning with one is deleted afterwards."""
    import redis

    made: list[str] = []

    def make(tag: str) -> str:
        made.append(tag + uuid.uuid4().hex[:10])
        return made[-1]

    yield make
    client = redis.Redis.from_url(local_redis)
    try:
        for name in made:
            left = list(client.scan_iter(match=name + "*", count=1000))
            if left:
                client.delete(*left)
    finally:
        client.close()


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    if not (SPEECH_DIR / "manifest.jsonl").exists():
        pytest.fail(f"speech data set not found at {SPEECH_DIR} (set S2ST_SPEECH_DIR)")
    return SPEECH_DIR


@pytest.fixture(scope="session")
def manifest(speech_dir: Path) -> dict[str, dict[str, Any]]:
    """The development set's manifest, keyed by clip id; each row has an absolute `path`."""
    return {row["id"]: row for row in load_manifest()}
