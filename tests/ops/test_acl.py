"""Redis ACL users per role (`s2st acl`), against a redis-server started with the ACL file;
and TLS (rediss://) with a certificate made by the test."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import NoPermissionError

from bus.keys import Keys
from bus.registry import Registry
from ops.acl import WorkerSpec, build_acl
from ops.redis_servers import free_port, redis_server_binary

ROOT = Path(__file__).resolve().parents[2]
SPEECH = Path(os.environ.get("S2ST_SPEECH_DIR", ROOT.parent / "shared" / "data" / "speech"))
CLIP = SPEECH / "fleurs_en_1972.flac"
PW = "s3cret-pw"
K = Keys("s2st")


@dataclass
class AclRedis:
    port: int
    proc: subprocess.Popen[bytes]

    def url(self, user: str, password: str = PW) -> str:
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def client(self, user: str, password: str = PW) -> redis.Redis:
        return redis.Redis.from_url(self.url(user, password))


def _start(workdir: Path, *args: str, probe: redis.Redis | None = None) -> subprocess.Popen[bytes]:
    with open(workdir / "redis.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [redis_server_binary(), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
             "--daemonize", "no", *args], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while True:
        try:
            if probe is not None and probe.ping():
                return proc
        except (redis.exceptions.ConnectionError, OSError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(workdir / 'redis.log').read_text()}")
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclRedis]:
    workdir = tmp_path_factory.mktemp("acl-redis")
    acl = workdir / "users.acl"
    workers = [WorkerSpec.parse(s) for s in (
        "asr:audio:transcript", "mt:transcript:translation", "tts:translation:speech",
        "relay:audio:relayed")]
    names = ["admin", "capture-r1", "capture-r2", "capture-r3", "player", "web",
             *(f"worker-{w.stage}" for w in workers)]
    acl.write_text(build_acl(K, ["r1", "r2", "r3"], workers, dict.fromkeys(names, PW)))
    port = free_port()
    probe = redis.Redis(port=port, username="admin", password=PW)
    proc = _start(workdir, "--port", str(port), "--aclfile", str(acl), probe=probe)
    try:
        yield AclRedis(port, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _env(url: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("S2ST_")}
    env.update(S2ST_REDIS_URL=url, PYTHONUNBUFFERED="1")
    return env


def _capture(url: str, room: str, session: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "capture", "--room", room, "--session", session,
         "--lang", "en", "--file", str(CLIP), "--fast"],
        cwd=ROOT, env=_env(url), text=True, capture_output=True, timeout=120)


def _denied(call: object, *args: object, **kw: object) -> None:
    with pytest.raises(NoPermissionError):
        call(*args, **kw)  # type: ignore[operator]


def _acl_log(admin: redis.Redis, user: str) -> list[dict[str, object]]:
    entries = admin.acl_log(count=100)
    return [e for e in entries if e.get("username") == user]


def test_no_login_no_access(acl_redis: AclRedis) -> None:
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=acl_redis.port).get("x")  # the default user is off
    with pytest.raises(redis.exceptions.AuthenticationError):
        acl_redis.client("capture-r1", "wrong").ping()


def test_capture_agent_writes_its_room_and_reads_nothing(acl_redis: AclRedis) -> None:
    admin = acl_redis.client("admin")
    admin.acl_log_reset()
    admin.xadd("s2st:{r2}:audio:other", {"x": "1"})
    admin.xadd("s2st:{r1}:transcript:s1", {"x": "1"})
    done = _capture(acl_redis.url("capture-r1"), "r1", "s1")
    assert done.returncode == 0, done.stdout + done.stderr
    # the real agent registered, published its chunks and its end marker
    assert admin.xlen("s2st:{r1}:audio:s1") >= 3
    assert admin.hget("s2st:{r1}:status", "s1") == b"ended"
    assert admin.sismember("s2st:rooms", "r1")
    assert not _acl_log(admin, "capture-r1"), "the agent hit a refused command"
    # its credentials are refused anywhere else in the room for room r2
    agent = _capture(acl_redis.url("capture-r1"), "r2", "s9")
    assert agent.returncode != 0
    assert "NOPERM" in agent.stdout + agent.stderr or "permission" in (
        agent.stdout + agent.stderr).lower()
    assert admin.hget("s2st:{r2}:status", "s9") is None

    c = acl_redis.client("capture-r1")
    other = "s2st:{r2}:audio:other"
    _denied(c.xrange, other)
    _denied(c.xrevrange, other)
    _denied(c.xread, {other: "0"})
    _denied(c.xadd, other, {"x": "1"})
    _denied(c.xadd, "s2st:{r2}:audio:new", {"x": "1"})
    _denied(c.hset, "s2st:{r2}:sessions", "s", "{}")
    # nothing of its own room is readable as a stream, but its last chunk (resync)
    own = "s2st:{r1}:audio:s1"
    _denied(c.xrange, own)
    _denied(c.xread, {own: "0"})
    _denied(c.xreadgroup, "asr", "c", {own: ">"})
    _denied(c.xrange, "s2st:{r1}:transcript:s1")
    _denied(c.xrevrange, "s2st:{r1}:transcript:s1")
    _denied(c.xadd, "s2st:{r1}:transcript:s1", {"x": "1"})
    _denied(c.delete, own)
    _denied(c.xtrim, own, maxlen=0)
    _denied(c.get, "s2st:{r1}:lease:asr:audio:s1")
    _denied(c.hgetall, "s2st:{r1}:progress")
    _denied(c.keys, "*")
    assert c.xrevrange(own, count=1)
    # the other room's capture user can publish there
    assert _capture(acl_redis.url("capture-r2"), "r2", "s2").returncode == 0


def test_web_user_runs_browser_speakers_in_any_room(acl_redis: AclRedis) -> None:
    """`s2st web`'s user: a capture agent fed by a PushedSource (what the speaker page's
    websocket does) registers, publishes and ends its session in any room; streams of the
    other stages stay out of reach."""
    import numpy as np

    from bus.settings import BusSettings
    from capture_agent.agent import AgentOptions, CaptureAgent
    from capture_agent.audio_io import load_audio
    from capture_agent.pipeline import CaptureProcessor
    from capture_agent.publisher import SessionRef
    from capture_agent.sources import PushedSource

    admin = acl_redis.client("admin")
    admin.acl_log_reset()
    pcm = (np.clip(load_audio(CLIP), -1, 1) * 32767).astype("<i2")

    async def speak(room: str) -> int:
        source = PushedSource()
        for offset in range(0, len(pcm), 800):
            source.push(offset, pcm[offset:offset + 800].tobytes(), time.time())
        source.finish("left")
        settings = BusSettings(redis_url=acl_redis.url("web"), log_level="warning")
        agent = CaptureAgent(settings, AgentOptions(SessionRef(room, "web-1", "en", "Ada")),
                             source, CaptureProcessor())
        return await agent.run()

    for room in ("r1", "elsewhere"):
        assert asyncio.run(speak(room)) == 0
        assert admin.xlen(f"s2st:{{{room}}}:audio:web-1") >= 3
        assert admin.hget(f"s2st:{{{room}}}:status", "web-1") == b"ended"
    assert not _acl_log(admin, "web"), "the agent hit a refused command"
    w = acl_redis.client("web")
    _denied(w.xrange, "s2st:{r1}:audio:web-1")
    _denied(w.xadd, "s2st:{r1}:transcript:web-1", {"x": "1"})
    _denied(w.hgetall, "s2st:{r1}:progress")
    _denied(w.delete, "s2st:{r1}:audio:web-1")
    assert w.xrange("s2st:{r1}:transcript:none") == []  # what the pages read


def test_web_user_reads_the_operator_view(acl_redis: AclRedis) -> None:
    """`s2st web`'s operator view as `web` (player_agent/web/admin.py: `s2st status`'s
    collection with its SCAN, XINFO GROUPS, leases, worker sets and health records; the
    speech streams' latency; the dead letters) and its room creation: no refused command.
    Of a stream it may not read it learns the length and the groups, not the entries."""
    from bus.connection import connect
    from bus.events import DeadLetter, Speech
    from bus.keys import Partition
    from bus.settings import BusSettings
    from bus.testing import make_chunk
    from player_agent.web.admin import AdminView

    admin = acl_redis.client("admin")
    admin.acl_log_reset()
    part = Partition("ov1", "s1")
    audio = K.stream("audio", part)

    async def overview() -> dict[str, Any]:
        boss = await connect(BusSettings(redis_url=acl_redis.url("admin"), log_level="warning"))
        web = await connect(BusSettings(redis_url=acl_redis.url("web"), log_level="warning"))
        try:
            await Registry(boss, K).register_session("ov1", "s1", "en", "Ada")
            for seq in range(3):
                await boss.xadd(audio, make_chunk("ov1", "s1", seq).to_fields())
            await boss.xgroup_create(audio, "asr", id="0")
            await boss.set(K.lease("asr", "audio", part), "w-asr", px=10_000)
            await boss.zadd(K.workers("asr"), {"w-asr": time.time()})
            await boss.hset(K.health("asr"), "w-asr", json.dumps({"unavailable": {"m": "x"}}))
            await boss.xadd(K.deadletter("ov1"), DeadLetter(
                stage="asr", worker="w-asr", stream=audio, entry_id="1-0", error="malformed: x",
                attempts=1, failed_at=time.time(), session="s1").to_fields())
            t = time.time()
            await boss.xadd(K.room_stream("speech", "ov1", "es"), Speech(
                room="ov1", session="s1", seq=0, part=0, last=True, lang="es", src_seq=0,
                text="hola", rate=16000, samples=0, duration=0, capture_start=t - 2,
                capture_end=t - 1).to_fields())
            view = await AdminView(web, K).overview()
            await Registry(web, K).create_room("ov2", ["fr"])
            return view
        finally:
            await boss.aclose()
            await web.aclose()

    view = asyncio.run(overview())
    assert not _acl_log(admin, "web"), _acl_log(admin, "web")
    stages = view["stages"]
    assert stages["asr"]["lag"] == 3 and stages["asr"]["pending"] == 0
    assert stages["asr"]["workers"][0]["health"] == {"unavailable": {"m": "x"}}
    assert view["dead_letters"]["by"] == [{"stage": "asr", "reason": "malformed", "count": 1}]
    [room] = [r for r in view["rooms"] if r["room"] == "ov1"]
    assert view["latency"]["segments"] == 1 and room["sessions"][0]["speaker"] == "Ada"
    assert admin.zrange(K.targets("ov2"), 0, -1) == [b"fr"] and admin.sismember(K.rooms, "ov2")
    w = acl_redis.client("web")
    _denied(w.xrange, audio)  # the speakers' audio: its length and groups only
    _denied(w.xrange, K.deadletter("ov1"))  # the dead letters: the latest, backwards
    _denied(w.xpending, audio, "asr")
    _denied(w.xinfo_consumers, audio, "asr")
    _denied(w.xgroup_create, K.stream("audio", Partition("ov1", "s2")), "asr", mkstream=True)
    _denied(w.set, K.lease("asr", "audio", part), "me")
    _denied(w.zadd, K.workers("asr"), {"me": 1})
    _denied(w.hset, K.health("asr"), "me", "{}")
    _denied(w.xadd, K.deadletter("ov1"), {"x": "1"})


def test_player_reads_and_only_registers_its_language(acl_redis: AclRedis) -> None:
    admin = acl_redis.client("admin")
    admin.sadd("s2st:rooms", "r1")
    speech = "s2st:{r1}:speech:es"
    admin.xadd(speech, {"x": "1"})
    admin.xadd("s2st:{r1}:translation:s1:es", {"x": "1"})
    p = acl_redis.client("player")
    assert p.xrange(speech)
    assert p.xread({speech: "0"})
    assert p.xrevrange("s2st:{r1}:translation:s1:es", count=1)
    assert p.xrange("s2st:{r1}:transcript:s1") is not None
    p.hgetall("s2st:{r1}:sessions")

    async def listen() -> list[str]:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(acl_redis.url("player"))
        try:
            reg = Registry(r, K)
            assert await reg.room_exists("r1")
            await reg.add_listener("r1", "de", 30)
            await reg.sessions("r1")
            return await reg.room_targets("r1")
        finally:
            await r.aclose()

    assert "de" in asyncio.run(listen())
    _denied(p.xadd, speech, {"x": "2"})
    _denied(p.xadd, "s2st:{r1}:audio:s1", {"x": "2"})
    _denied(p.delete, speech)
    _denied(p.xtrim, speech, maxlen=0)
    _denied(p.hset, "s2st:{r1}:sessions", "s", "{}")
    _denied(p.xrange, "s2st:{r1}:audio:s1")  # the speakers' raw audio is not for players
    _denied(p.xreadgroup, "tts", "c", {"s2st:{r1}:translation:s1:es": ">"})
    _denied(p.set, "s2st:{r1}:lease:tts:translation:s1:es", "me")
    _denied(p.zadd, "s2st:workers:tts", {"me": 1})


def _wait(pred: object, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def _stale_session(admin: redis.Redis, room: str, session: str) -> None:
    """A session whose capture agent went silent 10 s ago (the janitor must end it)."""
    now = time.time()
    admin.sadd("s2st:rooms", room)
    admin.hset(f"s2st:{{{room}}}:sessions", session,
               json.dumps({"source_lang": "en", "speaker": "", "started": now - 20}))
    admin.hset(f"s2st:{{{room}}}:status", session, "active")
    admin.hset(f"s2st:{{{room}}}:alive", session, int((now - 10) * 1000))


def _worker(url: str, **extra: str) -> subprocess.Popen[str]:
    env = _env(url)
    env["S2ST_SESSION_TIMEOUT_S"] = "5"
    env.update(extra)
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "worker", "--input", "audio", "--output", "relayed"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(worker: subprocess.Popen[str]) -> str:
    worker.terminate()
    out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, out
    return out


def _relay_session(url_worker: str, admin: redis.Redis, capture_url: str, room: str,
                   session: str) -> None:
    """A relay worker with ``url_worker`` ends a silent session (its janitor), then a second
    one carries a real captured session to its end.

    (Two runs, one session each: a worker that sees several streams finish at once can take
    a finished one again and keep it, which starves a new session; see the report.)"""
    silent = "silent-" + session
    _stale_session(admin, room, silent)
    worker = _worker(url_worker)
    try:
        _wait(lambda: admin.hget(f"s2st:{{{room}}}:status", silent) == b"ended")
        _wait(lambda: admin.hget(f"s2st:{{{room}}}:progress", f"fin|relay|audio:{silent}"))
        marker = admin.xrevrange(f"s2st:{{{room}}}:audio:{silent}", count=1)
        assert marker and marker[0][1][b"reason"] == b"timeout"
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker output:\n{_stop(worker)[-6000:]}") from None
    _stop(worker)
    worker = _worker(url_worker)
    try:
        done = _capture(capture_url, room, session)
        assert done.returncode == 0, done.stdout + done.stderr
        chunks = admin.xlen(f"s2st:{{{room}}}:audio:{session}")
        _wait(lambda: admin.hget(f"s2st:{{{room}}}:progress", f"fin|relay|audio:{session}"))
        assert admin.xlen(f"s2st:{{{room}}}:relayed:{session}") == chunks
        assert admin.xinfo_groups(f"s2st:{{{room}}}:audio:{session}")[0]["pending"] == 0
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker output:\n{_stop(worker)[-6000:]}") from None
    _stop(worker)


def test_relay_worker_with_its_user_runs_a_session(acl_redis: AclRedis) -> None:
    admin = acl_redis.client("admin")
    admin.acl_log_reset()
    _relay_session(acl_redis.url("worker-relay"), admin, acl_redis.url("capture-r3"), "r3",
                   "relay1")
    assert not _acl_log(admin, "worker-relay"), _acl_log(admin, "worker-relay")
    # with a short retention the same user sweeps the ended sessions (bus/retention.py)
    worker = _worker(acl_redis.url("worker-relay"), S2ST_RETENTION_S="1")
    try:
        _wait(lambda: not admin.hexists("s2st:{r3}:sessions", "relay1"))
        assert not admin.exists("s2st:{r3}:audio:relay1")
    finally:
        _stop(worker)
    assert not _acl_log(admin, "worker-relay"), _acl_log(admin, "worker-relay")
    w = acl_redis.client("worker-relay")
    # what the runtime does with its health record (Stage.health, read by s2st status)
    w.hset("s2st:health:relay", "w1", "{}")
    w.zrangebyscore("s2st:workers:relay", "-inf", "+inf")
    assert w.hgetall("s2st:health:relay") == {b"w1": b"{}"}
    w.hdel("s2st:health:relay", "w1")
    _denied(w.hset, "s2st:health:asr", "w1", "{}")  # not another stage's
    _denied(w.xrange, "s2st:{r1}:transcript:s1")  # not its stage's streams
    _denied(w.set, "s2st:{r1}:lease:asr:audio:s1", "x")
    _denied(w.hset, "s2st:{r1}:sessions", "s", "{}")
    _denied(w.flushall)
    _denied(w.config_get, "*")


def test_asr_worker_with_its_user_transcribes_a_session(acl_redis: AclRedis) -> None:
    """The real ASR worker (tiny.en) as worker-asr: a captured session is transcribed to its
    end with no refused command."""
    admin = acl_redis.client("admin")
    admin.acl_log_reset()
    env = _env(acl_redis.url("worker-asr"))
    env["S2ST_ASR_MODEL"] = "tiny.en"
    worker = subprocess.Popen([sys.executable, "-m", "ops.cli", "asr", "--model", "tiny.en"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        done = _capture(acl_redis.url("capture-r3"), "r3", "asr1")
        assert done.returncode == 0, done.stdout + done.stderr
        _wait(lambda: admin.hget("s2st:{r3}:progress", "fin|asr|audio:asr1"), timeout=90)
        texts = [f[b"text"].decode() for _, f in admin.xrange("s2st:{r3}:transcript:asr1")
                 if f.get(b"kind") == b"committed"]
        assert " ".join(texts).strip()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker output:\n{_stop(worker)[-6000:]}") from None
    _stop(worker)
    assert not _acl_log(admin, "worker-asr"), _acl_log(admin, "worker-asr")


def test_a_wrong_worker_user_is_refused(acl_redis: AclRedis) -> None:
    """The ASR worker's user cannot run the relay stage (its leases and outputs): the rules
    are checked, not merely present."""
    admin = acl_redis.client("admin")
    admin.sadd("s2st:rooms", "r1")
    admin.acl_log_reset()
    worker = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "worker", "--input", "audio", "--output", "relayed"],
        cwd=ROOT, env=_env(acl_redis.url("worker-asr")), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        _wait(lambda: _acl_log(admin, "worker-asr"), timeout=20)
    finally:
        worker.terminate()
        worker.communicate(timeout=30)


def test_mt_worker_reads_the_room_glossary_and_only_the_admin_writes_it(acl_redis: AclRedis) -> None:
    """P:{room}:mt:glossary:<lang> (workers.mt.glossary): written by operators, read by the MT
    stage's workers (its own per-room settings, P:{room}:mt:*), no one else."""
    key = "s2st:{r1}:mt:glossary:es"
    acl_redis.client("admin").hset(key, "earnings call", "conferencia de resultados")
    mt = acl_redis.client("worker-mt")
    assert mt.hgetall(key) == {b"earnings call": b"conferencia de resultados"}
    _denied(mt.hset, key, "a", "b")
    _denied(acl_redis.client("worker-asr").hgetall, key)
    _denied(acl_redis.client("player").hgetall, key)


def test_acl_command(tmp_path: Path) -> None:
    out = tmp_path / "users.acl"
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "acl", "--room", "conf1", "--password",
         "player=pp", "--out", str(out)], cwd=ROOT, text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "pp" not in text and "user player on #" in text
    users = {line.split()[1] for line in text.splitlines()}
    assert users == {"default", "admin", "capture-conf1", "player", "web", "worker-asr",
                     "worker-mt", "worker-tts"}
    generated = dict(line.split() for line in done.stderr.splitlines())
    assert set(generated) == users - {"default", "player"}
    bad = subprocess.run([sys.executable, "-m", "ops.cli", "acl", "--room", "a}b"], cwd=ROOT,
                         text=True, capture_output=True, timeout=60)
    assert bad.returncode == 2 and "room id" in bad.stderr


# -- TLS ------------------------------------------------------------------------------------
def _tls_redis(workdir: Path) -> tuple[int, subprocess.Popen[bytes], Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    lib = subprocess.run(["ldd", redis_server_binary()], capture_output=True, text=True).stdout
    if "libssl" not in lib:
        pytest.skip("this redis-server was built without TLS (no libssl)")
    ca_key, ca, key, csr, cert = (workdir / n for n in
                                  ("ca.key", "ca.crt", "redis.key", "redis.csr", "redis.crt"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=s2st test CA",
        "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key),
        "-out", str(csr))
    ext = workdir / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    port = free_port()
    probe = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(ca))
    proc = _start(workdir, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                  "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                  "--tls-auth-clients", "no", probe=probe)
    return port, proc, ca


def test_tls_url_relay_worker(tmp_path: Path) -> None:
    port, proc, ca = _tls_redis(tmp_path)
    try:
        admin = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(ca))
        # verified against the test CA (redis-py takes ssl_ca_certs from the URL) ...
        verified = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
        _relay_session(verified, admin, verified, "tls", "s1")
        # ... and a plain redis:// URL to the TLS port does not get through
        plain = _capture(f"redis://127.0.0.1:{port}/0", "tls", "s2")
        assert plain.returncode != 0
        # without the CA the server's certificate is refused
        unverified = _capture(f"rediss://127.0.0.1:{port}/0", "tls", "s3")
        assert unverified.returncode != 0
        assert "certificate" in (unverified.stdout + unverified.stderr).lower()
        # ssl_cert_reqs=none: encrypted, not verified (tests only)
        assert _capture(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none", "tls",
                        "s4").returncode == 0
        assert admin.hget("s2st:{tls}:status", "s4") == b"ended"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
