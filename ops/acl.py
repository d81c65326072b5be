"""Redis ACL users per role: `s2st acl` prints an ACL file (Redis 7, `aclfile`).

Roles and what each may do (docs/operations.md, "Redis users per role"):

* ``capture-<room>``: add audio chunks to its room's audio streams (and ring their bell:
  ``P:bell:audio`` on a plain Redis, shared by all rooms, ``P:{room}:bell:audio`` on a
  cluster) and write its room's
  session registry (sessions, status, alive, meta), add the room to ``P:rooms``, announce.
  It may not read any stream (XRANGE, XREAD), except XREVRANGE on its own room's audio
  streams: after a Redis outage the publisher reads the last chunk it wrote so as not to
  send it twice. Nothing of another room.
* ``player``: read the speech, transcript and translation streams and the registry of
  every room; it writes only what a listener must: ``ZADD`` on ``P:{room}:targets`` (the
  language it listens to, refreshed) and ``XADD`` on ``P:announce`` (so MT/TTS start that
  language at once). The web page (`s2st web`) uses it too.
* ``web``: the ``player``'s reads and writes, and a capture agent's writes in every room
  (registry, audio streams and their bell, ``P:rooms``, XREVRANGE on audio streams): `s2st
  web` runs a capture agent per browser speaker (its tokens decide who may speak where);
  and what its operator view reads (SCAN; XLEN and XINFO GROUPS on room keys; GET/PTTL on
  leases; ``P:workers:*``, ``P:health:*``; XREVRANGE on dead letters).
* ``worker-<stage>``: its input and output streams and their bells, its leases, the room's
  progress and dead letters, the status and alive hashes and the audio streams (the janitor
  ends silent sessions and announces it), ``P:workers:<stage>`` and ``P:health:<stage>``,
  the announcements,
  read-only registry keys, and HDEL on ``sessions`` (the retention sweep forgets sessions that ended two
  retention windows ago, bus/retention.py).
* ``admin``: everything (``s2st room create``, ``s2st status``, operators).

The ``default`` user is turned off: every client must log in. Passwords are written as
SHA-256 hashes (``#<hex>``), so the file holds no clear text. Key patterns use the hash
tag ``{room}`` literally (``*`` never crosses it: room ids have no braces).
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.ids import check_id, check_name
from bus.keys import Keys
from pipeline import PIPELINE

# (stage, input family, output family): the consumer stages of the pipeline
DEFAULT_WORKERS = tuple(f"{stage}:{PIPELINE.input_of(stage).name}:{PIPELINE.writes(stage)[0].name}"
                        for stage in PIPELINE.workers)
# what capture agents (and browser speakers) write: the pipeline's first family
SOURCE = PIPELINE.root.name
# what the player and the web page read
PLAYER_READS = tuple(sorted(f.name for f in PIPELINE.read_by("player", "web")))

# every client: connection set-up of redis-py (its CLIENT SETINFO, unknown to Redis 7.0 and
# refused here, is ignored by redis-py), and TIME: every process measures its clock against
# Redis's (bus/clock.py), and the janitor's script reads it
_CONNECT = "+ping +hello +auth +client|setname +client|getname +client|id +time"

# what the consumer runtime (bus/runtime/, bus/registry.py, bus/lua/*.lua) and the
# stages' recovery reads use
WORKER_COMMANDS = (
    "+evalsha +eval +script|load +script|exists "  # the Lua scripts (commands inside are checked)
    "+xreadgroup +xread +xrange +xrevrange +xadd +xack +xautoclaim +xclaim +xpending +xlen "
    "+xgroup|create +xinfo|groups +xinfo|stream "
    "+set +get +pexpire +del +exists "  # leases: SET NX PX, renew/release scripts
    "+hget +hset +hexists +hgetall +hdel +hscan "  # progress, status (janitor), registry reads
    "+smembers +sismember +zadd +zrem +zcard +zcount +zrangebyscore +zremrangebyscore "
    "+multi +exec +discard"
)
PLAYER_COMMANDS = (
    "+xread +xrange +xrevrange +xlen +xinfo|stream +smembers +sismember +hget +hgetall "
    "+zrange +zrangebyscore +zscore"
)


@dataclass(frozen=True)
class WorkerSpec:
    stage: str
    input: str
    output: str

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"worker spec {text!r}: expected STAGE:INPUT:OUTPUT")
        stage, inp, out = (check_name(p, "stage or family") for p in parts)
        return cls(stage, inp, out)


def password_hash(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def capture_rule(keys: Keys, room: str) -> str:
    r = keys.room(check_id(room, "room id"))
    return (
        f"resetkeys resetchannels -@all {_CONNECT} +multi +exec +discard "
        f"+xadd ~{r}:{SOURCE}:* ~{r}:bell:{SOURCE} ~{keys.prefix}:bell:{SOURCE} ~{keys.announce} "
        f"(+hset +hsetnx +hget +hdel +hgetall ~{r}:sessions ~{r}:status ~{r}:alive ~{r}:meta) "
        f"(+sadd ~{keys.rooms}) "
        f"(+xrevrange %R~{r}:{SOURCE}:*)"
    )


def player_rule(keys: Keys) -> str:
    r = f"{keys.prefix}:{{*}}"
    reads = " ".join(
        f"%R~{r}:{name}" for name in
        (*(f"{name}:*" for name in PLAYER_READS), "sessions", "status", "alive",
         "targets", "meta")
    )
    return (
        f"resetkeys resetchannels -@all {_CONNECT} {PLAYER_COMMANDS} {reads} %R~{keys.rooms} "
        f"(+zadd ~{r}:targets) (+xadd ~{keys.announce})"
    )


def web_rule(keys: Keys) -> str:
    """The player's rule plus a capture agent's writes in every room (browser speakers), and
    the operator view's reads (`s2st status`'s collection, ops/status.py): key names (SCAN),
    the length and consumer groups of any room key (XLEN, XINFO GROUPS: counts and ids, no
    content), leases (GET, PTTL), the worker sets and health records, the dead letters."""
    r = f"{keys.prefix}:{{*}}"
    return (
        f"{player_rule(keys)} +multi +exec +discard +scan "
        f"(+xadd ~{r}:{SOURCE}:* ~{r}:bell:{SOURCE} ~{keys.prefix}:bell:{SOURCE}) "
        f"(+hset +hsetnx +hget +hdel +hgetall ~{r}:sessions ~{r}:status ~{r}:alive ~{r}:meta) "
        f"(+sadd ~{keys.rooms}) (+xrevrange %R~{r}:{SOURCE}:*) "
        f"(+xlen +xinfo|groups %R~{r}:*) (+get +pttl %R~{r}:lease:*) "
        f"(+zrange %R~{keys.prefix}:workers:*) (+hgetall %R~{keys.prefix}:health:*) "
        f"(+xrevrange %R~{r}:deadletter)"
    )


def worker_rule(keys: Keys, spec: WorkerSpec) -> str:
    r = f"{keys.prefix}:{{*}}"
    rw = [f"{r}:{spec.input}:*", f"{r}:{spec.output}:*", f"{r}:lease:{spec.stage}:*",
          # wait on one bell, ring the other (per room on a cluster, one for all rooms else)
          f"{r}:bell:{spec.input}", f"{r}:bell:{spec.output}",
          f"{keys.prefix}:bell:{spec.input}", f"{keys.prefix}:bell:{spec.output}",
          f"{r}:progress", f"{r}:deadletter", f"{r}:status", f"{r}:alive",
          keys.workers(spec.stage), keys.health(spec.stage),
          keys.announce]  # the janitor announces what it ended
    # (alive is only read, but expire_session.lua is given it as a key, and Redis wants
    # full access to every key a script is given)
    if spec.input != SOURCE:
        # the janitor appends the end marker of a silent session (and rings its bell)
        rw += [f"{r}:{SOURCE}:*", f"{r}:bell:{SOURCE}", f"{keys.prefix}:bell:{SOURCE}"]
    # P:{room}:<stage>:*: the stage's own per-room settings, e.g. the MT glossaries
    ro = [f"{r}:sessions", f"{r}:targets", f"{r}:meta", f"{r}:{spec.stage}:*", keys.rooms]
    return (
        f"resetkeys resetchannels -@all {_CONNECT} {WORKER_COMMANDS} "
        + " ".join(f"~{k}" for k in rw) + " " + " ".join(f"%R~{k}" for k in ro)
        + f" (+hdel ~{r}:sessions)"  # the retention sweep forgets expired sessions
    )


def admin_rule() -> str:
    return "~* &* +@all"


def build_acl(
    keys: Keys,
    rooms: list[str],
    workers: list[WorkerSpec],
    passwords: dict[str, str],
    *,
    player: bool = True,
    admin: bool = True,
    web: bool = True,
) -> str:
    """The ACL file text; ``passwords`` maps every user name to its password."""
    rules: list[tuple[str, str]] = []
    if admin:
        rules.append(("admin", admin_rule()))
    rules += [(f"capture-{room}", capture_rule(keys, room)) for room in rooms]
    if player:
        rules.append(("player", player_rule(keys)))
    if web:
        rules.append(("web", web_rule(keys)))
    rules += [(f"worker-{w.stage}", worker_rule(keys, w)) for w in workers]
    lines = ["user default off resetkeys -@all"]  # an ACL file takes no comments
    for name, rule in rules:
        lines.append(f"user {name} on {password_hash(passwords[name])} {rule}")
    return "\n".join(lines) + "\n"


def user_names(rooms: list[str], workers: list[WorkerSpec], *, player: bool = True,
               admin: bool = True, web: bool = True) -> list[str]:
    names = ["admin"] if admin else []
    names += [f"capture-{room}" for room in rooms]
    if player:
        names.append("player")
    if web:
        names.append("web")
    names += [f"worker-{w.stage}" for w in workers]
    return names


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "acl",
        help="print a Redis ACL file: users per role (capture per room, player, workers)",
        description="Print a Redis 7 ACL file (aclfile) with one user per role: capture-<room> "
        "(writes its room's audio and registry only), player (reads; registers listened "
        "languages), web (the player's rights and browser speakers' capture in every room), "
        "worker-<stage> (its streams, leases, progress), admin. Passwords come "
        "from --password USER=PW, else --default-password, else are generated and printed "
        "to stderr; the file holds their SHA-256 only.",
    )
    p.add_argument("--room", action="append", default=[], help="a room (repeatable)")
    p.add_argument("--worker", action="append", default=None, metavar="STAGE:INPUT:OUTPUT",
                   help=f"a worker user (repeatable; default {', '.join(DEFAULT_WORKERS)})")
    p.add_argument("--key-prefix", default="s2st", help="key prefix (S2ST_KEY_PREFIX)")
    p.add_argument("--password", action="append", default=[], metavar="USER=PW")
    p.add_argument("--default-password", help="password of every user not given one")
    p.add_argument("--no-admin", action="store_true", help="leave the admin user out")
    p.add_argument("--out", type=Path, help="write the file here (default: stdout)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        keys = Keys(args.key_prefix)
        rooms = [check_id(room, "room id") for room in args.room]
        workers = [WorkerSpec.parse(w) for w in (args.worker or DEFAULT_WORKERS)]
        given = dict(item.split("=", 1) for item in args.password if "=" in item)
        if len(given) != len(args.password):
            raise ValueError("--password takes USER=PASSWORD")
    except ValueError as exc:
        print(f"s2st acl: {exc}", file=sys.stderr)
        return 2
    names = user_names(rooms, workers, admin=not args.no_admin)
    unknown = sorted(set(given) - set(names))
    if unknown:
        print(f"s2st acl: --password for unknown users: {', '.join(unknown)}", file=sys.stderr)
        return 2
    passwords: dict[str, str] = {}
    for name in names:
        if name in given:
            passwords[name] = given[name]
        elif args.default_password:
            passwords[name] = args.default_password
        else:
            passwords[name] = secrets.token_urlsafe(18)
            print(f"{name} {passwords[name]}", file=sys.stderr)
    text = build_acl(keys, rooms, workers, passwords, admin=not args.no_admin)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
