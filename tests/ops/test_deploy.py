"""The deployment files: docker-compose.yml (through `docker-compose config` when the client
is installed, and structurally in any case), Prometheus, the Grafana dashboard, the ACL the
compose file makes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from ops.redis_servers import free_port, redis_server_binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "s2st.json"
PASSWORDS = {"S2ST_ADMIN_PASSWORD": "adm-pw", "S2ST_CAPTURE_PASSWORD": "cap-pw",
             "S2ST_PLAYER_PASSWORD": "play-pw", "S2ST_WORKER_PASSWORD": "work-pw",
             "S2ST_WEB_PASSWORD": "web-pw",
             "S2ST_WEB_SECRET": "web-secret-of-at-least-32-characters"}
_VAR = re.compile(r"\$\{(\w+)(?::[-?]([^}]*))?\}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?message} (enough for our file)."""
    def sub(m: re.Match[str]) -> str:
        name, rest = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if m.group(0).startswith("${" + name + ":-"):
            return rest or ""
        raise KeyError(f"{name} is required: {rest}")
    return _VAR.sub(sub, value)


def _s2st_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in doc["services"].items()
            if str(svc.get("image", "")).startswith("s2st:")}


def _compose_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S2ST_")}
    env.update(extra)
    return env


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose (v1, apt-get install docker-compose) is not installed")
def test_docker_compose_config_validates() -> None:
    run = lambda *a, env: subprocess.run(  # noqa: E731
        ["docker-compose", "-f", str(COMPOSE), *a], cwd=ROOT, env=env, text=True,
        capture_output=True, timeout=60)
    ok = run("config", "-q", env=_compose_env(**PASSWORDS))
    assert ok.returncode == 0, ok.stderr
    services = run("--profile", "gpu", "config", "--services", env=_compose_env(**PASSWORDS))
    assert services.returncode == 0, services.stderr
    assert {"redis", "acl", "asr", "mt", "tts", "web", "prometheus", "grafana", "asr-gpu",
            "mt-llm"} <= set(services.stdout.split())
    # without the passwords it refuses to run, naming the variable
    missing = run("config", "-q", env=_compose_env())
    assert missing.returncode != 0 and "S2ST_ADMIN_PASSWORD" in missing.stderr
    # nor without the secret of the room links (the web server binds 0.0.0.0)
    no_secret = {k: v for k, v in PASSWORDS.items() if k != "S2ST_WEB_SECRET"}
    missing = run("config", "-q", env=_compose_env(**no_secret))
    assert missing.returncode != 0 and "S2ST_WEB_SECRET" in missing.stderr
    # the resolved file: the worker URLs carry the worker password, AOF is on
    resolved = yaml.safe_load(run("--profile", "gpu", "config",
                                  env=_compose_env(**PASSWORDS)).stdout)
    url = resolved["services"]["asr"]["environment"]["S2ST_REDIS_URL"]
    assert url == "redis://worker-asr:work-pw@redis:6379/0"
    assert "appendonly" in " ".join(resolved["services"]["redis"]["command"])


def test_every_s2st_service_runs_a_real_command() -> None:
    doc = _compose()
    services = _s2st_services(doc)
    assert {"acl", "asr", "mt", "tts", "web", "asr-gpu", "mt-llm"} <= set(services)
    for name, svc in services.items():
        command = [_interpolate(str(a), PASSWORDS) for a in svc["command"]]
        # the whole command line must parse (options and values), then --help stops it
        done = subprocess.run([sys.executable, "-m", "ops.cli", *command, "--help"], cwd=ROOT,
                              text=True, capture_output=True, timeout=60)
        assert done.returncode == 0, f"{name}: s2st {' '.join(command)}: {done.stderr}"
        assert "usage: s2st " + command[0] in done.stdout


def test_structure() -> None:
    doc = _compose()
    svc = doc["services"]
    redis_cmd = " ".join(svc["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--aclfile /acl/users.acl" in redis_cmd
    assert svc["redis"]["depends_on"]["acl"]["condition"] == "service_completed_successfully"
    for name in ("asr-gpu", "mt-llm"):
        assert svc[name]["profiles"] == ["gpu"]
        devices = svc[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    assert svc["asr-gpu"]["command"][:5] == ["asr", "--model", "large-v3", "--device", "cuda"]
    models = json.loads(svc["mt-llm"]["environment"]["S2ST_MT_MODELS"])
    rules = svc["mt-llm"]["environment"]["S2ST_MT_BACKENDS"]
    llm = [n for n, m in models.items() if m["kind"] == "llm"]
    assert llm and all(n in rules for n in llm)
    # the MT settings parse as the worker parses them
    from workers.mt.config import MTSettings

    llm_env = svc["mt-llm"]["environment"]
    MTSettings.from_env({k: str(v) for k, v in llm_env.items()})
    # the LLM is a folder of the models volume (nothing is downloaded at run time), and one
    # that is not there stops the worker instead of a silent Apertium in its place
    paths = [m["path"] for m in json.loads(_interpolate(llm_env["S2ST_MT_MODELS"], {})).values()]
    assert paths and all(p.startswith(llm_env["HF_HOME"] + "/") for p in paths)
    assert f"models:{llm_env['HF_HOME']}" in svc["mt-llm"]["volumes"]
    assert llm_env["HF_HUB_OFFLINE"] == "1" and llm_env["S2ST_MT_MODEL_FALLBACK"] == "off"
    # files mounted from the repository exist
    for s in svc.values():
        for vol in s.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{src} is mounted but missing"
    # the Dockerfile takes the build args the gpu profile passes
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in ("asr-gpu", "mt-llm"):
        for arg in svc[name]["build"]["args"]:
            assert f"ARG {arg}" in dockerfile
    # every service with /metrics on 9100 is scraped by Prometheus
    prom = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    sd = prom["scrape_configs"][0]["dns_sd_configs"][0]
    scraped = set(sd["names"])
    for name, s in _s2st_services(doc).items():
        if s.get("environment", {}).get("S2ST_METRICS_PORT"):
            assert name in scraped and str(sd["port"]) == s["environment"]["S2ST_METRICS_PORT"]
    assert scraped <= set(svc)
    # Grafana provisioning points at the mounted dashboards and at the Prometheus service
    prov = ROOT / "ops" / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert ds["url"] == "http://prometheus:9090"
    board = yaml.safe_load((prov / "dashboards" / "s2st.yml").read_text())["providers"][0]
    mount = [v for v in svc["grafana"]["volumes"] if "dashboards" in v and "provisioning" not in v]
    assert mount[0].split(":")[1] == board["options"]["path"]
    assert json.loads(DASHBOARD.read_text())["panels"][0]["datasource"]["uid"] == ds["uid"]


def _known_metrics() -> dict[str, str]:
    """Every s2st metric the code defines, by name, with its type."""
    from prometheus_client import REGISTRY

    import bus.metrics  # noqa: F401
    import player_agent.latency  # noqa: F401
    import workers.tts.metrics  # noqa: F401
    from capture_agent.metrics import CaptureMetrics

    out: dict[str, str] = {}
    for registry in (REGISTRY, CaptureMetrics().registry):
        for family in registry.collect():
            if family.name.startswith("s2st_"):
                out[family.name] = family.type
    return out


def test_dashboard_queries_use_real_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    known = _known_metrics()
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for word in ("end-to-end", "handler", "hop", "lag", "dead letters", "sessions",
                 "first audio", "player"):
        assert word in titles, word
    used: set[str] = set()
    for panel in board["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            for name in re.findall(r"\bs2st_[a-z0-9_]+", expr):
                used.add(name)
                if name.endswith("_bucket"):
                    base = name.removesuffix("_bucket")
                    assert known.get(base) == "histogram", f"{name}: no histogram {base}"
                    assert "histogram_quantile" in expr
                elif name.endswith("_total"):
                    base = name.removesuffix("_total")
                    assert known.get(base) == "counter", f"{name}: no counter {base}"
                    assert "rate(" in expr or "increase(" in expr
                else:
                    assert known.get(name) == "gauge", f"{name}: no gauge of that name"
    assert {"s2st_capture_to_output_seconds_bucket", "s2st_group_lag", "s2st_dead_letters_total",
            "s2st_tts_first_audio_seconds_bucket", "s2st_player_latency_seconds_bucket"} <= used


def test_compose_acl_loads_and_logs_the_workers_in(tmp_path: Path) -> None:
    """The acl service's own command, run for real: Redis loads the file and the URLs the
    services are given log in as users that exist, with only their rights."""
    doc = _compose()
    svc = doc["services"]
    args = [_interpolate(str(a), PASSWORDS) for a in svc["acl"]["command"]]
    acl = tmp_path / "users.acl"
    args[args.index("--out") + 1] = str(acl)
    done = subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    port = free_port()
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--dir", str(tmp_path), "--aclfile", str(acl)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        admin = redis.Redis(port=port, username="admin", password=PASSWORDS["S2ST_ADMIN_PASSWORD"])
        deadline = time.time() + 10
        while True:
            try:
                admin.ping()
                break
            except redis.exceptions.ConnectionError:
                assert proc.poll() is None, "redis-server refused the ACL file"
                assert time.time() < deadline
                time.sleep(0.05)
        for name, s in _s2st_services(doc).items():
            url = s.get("environment", {}).get("S2ST_REDIS_URL")
            if url is None:
                continue
            url = _interpolate(url, PASSWORDS).replace("@redis:6379", f"@127.0.0.1:{port}")
            client = redis.Redis.from_url(url)
            assert client.ping(), name
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.xadd("s2st:{demo}:transcript:x", {"a": "1"}) if name == "web" else \
                    client.flushall()
            if name == "web":  # the browser speakers' audio, in any room
                assert client.xadd("s2st:{any}:audio:x", {"a": "1"})
        capture = redis.Redis(port=port, username="capture-demo",
                              password=PASSWORDS["S2ST_CAPTURE_PASSWORD"])
        assert capture.xadd("s2st:{demo}:audio:s1", {"a": "1"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            capture.xadd("s2st:{other}:audio:s1", {"a": "1"})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
