"""Fixtures of the ops tests: the local Redis with a key prefix per test."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

LOCAL_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def local_url(local_redis: str) -> str:
    return local_redis


@pytest.fixture
def prefix(scratch_prefix: Callable[[str], str]) -> str:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    return scratch_prefix("tops")


