"""The command line: help, settings validated at start, clear errors, room and session commands."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from bus.settings import BusSettings, settings_from_args


def _s2st(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_help_explains_each_part() -> None:
    out = _s2st("--help")
    assert out.returncode == 0
    for part in ("capture", "asr", "mt", "tts", "play", "bench", "worker"):
        assert part in out.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"S2ST_LEASE_TTL_MS": "abc"}, "S2ST_LEASE_TTL_MS"),
        ({"S2ST_REDIS_URL": "http://x"}, "S2ST_REDIS_URL"),
        ({"S2ST_KEY_PREFIX": "a{b}"}, "S2ST_KEY_PREFIX"),
        ({"S2ST_HEARTBEAT_MS": "2000"}, "heartbeat_ms"),
    ],
)
def test_invalid_settings_stop_with_a_clear_message(env: dict[str, str], message: str) -> None:
    out = _s2st("sessions", env=env)
    assert out.returncode == 2
    assert message in out.stderr and "invalid settings" in out.stderr


def test_unreachable_redis_is_one_clear_line() -> None:
    out = _s2st("sessions", "--redis-url", "redis://127.0.0.1:1/0")
    assert out.returncode == 3
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in out.stderr
    assert "Traceback" not in out.stderr


def test_password_is_not_printed() -> None:
    out = _s2st("sessions", "--redis-url", "redis://user:secret@127.0.0.1:1/0")
    assert out.returncode == 3 and "secret" not in out.stderr


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2ST_KEY_PREFIX", "fromenv")
    assert BusSettings().key_prefix == "fromenv"

    class Args:
        key_prefix = "fromflag"

    assert settings_from_args(Args()).key_prefix == "fromflag"  # type: ignore[arg-type]


def test_room_and_sessions_commands(local_redis: str) -> None:
    prefix = "cli" + uuid.uuid4().hex[:8]
    env = {"S2ST_KEY_PREFIX": prefix}
    out = _s2st("room", "create", "conf1", "--langs", "es,ca", env=env)
    assert out.returncode == 0, out.stderr
    assert "targets ca, es" in out.stdout
    bad = _s2st("room", "create", "bad{room}", env=env)
    assert bad.returncode == 2 and "invalid room id" in bad.stderr
    listed = _s2st("room", "list", env=env)
    assert "conf1\ttargets=ca,es" in listed.stdout
    import redis

    r = redis.Redis.from_url(local_redis)
    for key in r.scan_iter(match=f"{prefix}:*"):
        r.delete(key)
