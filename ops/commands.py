"""Bus-level commands: a generic relay worker, rooms and sessions, the bus benchmark."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bus.command import run_async
from bus.settings import BusSettings, add_bus_options
from player_agent.web.tokens import room_link as room_link  # (moved there)


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "worker",
        help="run a generic relay stage (no-op; for tests, benchmarks and wiring checks)",
        description="Run the consumer runtime with the no-op relay stage: every event of the "
        "input family is copied to the output family of the same session. Stops cleanly on "
        "SIGTERM/SIGINT (drains, releases its streams, exits 0).",
    )
    p.add_argument("--name", default="relay", help="stage (consumer group) name")
    p.add_argument("--input", default="audio", help="input stream family")
    p.add_argument("--output", default="relayed", help="output stream family")
    p.add_argument("--per-lang", action="store_true", help="input streams are per language")
    p.add_argument("--fail-seq", type=int, action="append", default=[],
                   help="raise on entries with this seq (poison test)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="sleep this long per entry")
    add_bus_options(p)
    p.set_defaults(func=_worker)

    p = commands.add_parser(
        "room", help="create rooms, set their target languages and glossaries, make access links",
        description="create ROOM --langs es,ca: a room and its target languages; list: the "
        "rooms; glossary ROOM LANG [--set 'TERM=TRANSLATION' | --set TERM] [--remove TERM] "
        "[--list]: terms the MT must translate into LANG in a fixed form (a TERM alone is kept "
        "as it is); token ROOM --role listener|speaker|admin --ttl 8h: print a link to the room "
        "with an access token signed with S2ST_WEB_SECRET (no Redis needed; admin tokens "
        "open every room).")
    p.add_argument("action", choices=["create", "list", "glossary", "token"])
    p.add_argument("room", nargs="?")
    p.add_argument("lang", nargs="?", help="glossary: the target language")
    p.add_argument("--langs", default="", help="comma-separated target languages, e.g. es,ca")
    t = p.add_argument_group("token")
    t.add_argument("--role", choices=["listener", "speaker", "admin"], default="listener",
                   help="what the link lets its holder do (listener)")
    t.add_argument("--ttl", default="8h", help="how long the token is valid: 90s, 30m, 8h, "
                   "2d (8h; at most 90d)")
    t.add_argument("--base-url", default=os.environ.get("S2ST_WEB_URL", "http://127.0.0.1:8080"),
                   help="where s2st web is reached (S2ST_WEB_URL, else http://127.0.0.1:8080)")
    t.add_argument("--lang", dest="link_lang", help="listener: the language the page opens "
                   "in (default: the room's first); speaker: the language spoken")
    p.add_argument("--set", dest="set_terms", action="append", default=[], metavar="TERM[=TR]",
                   help="glossary: add or replace an entry (repeatable)")
    p.add_argument("--remove", action="append", default=[], metavar="TERM",
                   help="glossary: remove an entry (repeatable)")
    p.add_argument("--list", dest="list_terms", action="store_true",
                   help="glossary: print the entries (the default with no --set/--remove)")
    add_bus_options(p)
    p.set_defaults(func=_room)

    p = commands.add_parser("sessions", help="list the sessions of one room or of all rooms")
    p.add_argument("--room")
    add_bus_options(p)
    p.set_defaults(func=_sessions)

    b = bench.add_parser(
        "bus",
        help="no-op stage chained three times over N sessions (events/s, hop latency)",
        description="Three relay workers (separate processes) chained audio->b1->b2->b3 over N "
        "concurrent sessions against the configured Redis; reports events/s per worker process "
        "and per-hop latency p50/p95/p99 added by the bus.",
    )
    b.add_argument("--sessions", default="1,10,100", help="comma-separated N values")
    b.add_argument("--events", type=int, default=20000, help="events per N for the throughput run")
    b.add_argument("--rate", type=float, default=2000.0,
                   help="offered events/s for the latency run (0 = skip it)")
    b.add_argument("--duration", type=float, default=5.0,
                   help="seconds of the latency run (after one second of warm-up)")
    b.add_argument("--workers", type=int, default=1, help="relay worker processes per stage")
    b.add_argument("--json", help="write the results here")
    add_bus_options(b)
    b.set_defaults(func=_bench_bus)


def _worker(args: argparse.Namespace) -> int:
    from bus.runtime import Worker
    from bus.testing import RelayStage

    stage = RelayStage(args.name, args.input, args.output, fail_seqs=set(args.fail_seq),
                       per_lang=args.per_lang, delay_s=args.delay_ms / 1000)

    async def main(settings: BusSettings) -> int:
        await Worker(stage, settings, root_family="audio").run(handle_signals=True)
        return 0

    return run_async(args, main)


def _room_token(args: argparse.Namespace) -> int:
    from bus.ids import InvalidId, check_id, check_lang
    from player_agent.web.tokens import SecretError, expiry_text, mint, parse_ttl, secret_from_env

    try:
        secret = secret_from_env()
        ttl = parse_ttl(args.ttl)
        if args.role != "admin" and not args.room:
            raise ValueError("a room id is required: s2st room token ROOM --role ...")
        room = check_id(args.room, "room id") if args.room else None
        link_lang = args.link_lang or args.lang
        lang = check_lang(link_lang) if link_lang else None
        if not args.base_url.startswith(("http://", "https://")):
            raise ValueError(f"--base-url must start with http:// or https://, got "
                             f"{args.base_url!r}")
    except (SecretError, ValueError, InvalidId) as exc:
        print(f"s2st room token: {exc}", file=sys.stderr)
        return 2
    token, grant = mint(secret, room or "*", args.role, ttl)
    print(room_link(args.base_url, room, args.role, token, lang))
    scope = "every room" if args.role == "admin" else f"room {room}"
    print(f"{args.role} link for {scope}, valid until {expiry_text(grant)} "
          f"(token id {grant.token_id})", file=sys.stderr)
    return 0


def _room(args: argparse.Namespace) -> int:
    if args.action == "token":
        return _room_token(args)
    from bus.connection import connect
    from bus.registry import Registry

    async def main(settings: BusSettings) -> int:
        client = await connect(settings)
        reg = Registry(client, settings.keys, cluster=settings.redis_cluster)
        if args.action == "glossary":
            try:
                return await _glossary(args, client, settings)
            finally:
                await client.aclose()
        if args.action == "create":
            if not args.room:
                print("s2st room create: a room id is required")
                return 2
            langs = [x.strip() for x in args.langs.split(",") if x.strip()]
            await reg.create_room(args.room, langs)
            print(f"room {args.room}: targets {', '.join(await reg.room_targets(args.room))}")
        else:
            for room in await reg.rooms():
                print(f"{room}\ttargets={','.join(await reg.room_targets(room))}")
        await client.aclose()
        return 0

    return run_async(args, main)


async def _glossary(args: argparse.Namespace, client: Any, settings: BusSettings) -> int:
    from bus.ids import InvalidId
    from workers.mt import glossary

    if not args.room or not args.lang:
        print("s2st room glossary: a room id and a target language are required")
        return 2
    try:
        key = glossary.glossary_key(settings.keys, args.room, args.lang)
        added = await glossary.set_terms(client, settings.keys, args.room, args.lang, args.set_terms)
        removed = await glossary.remove_terms(client, settings.keys, args.room, args.lang,
                                              args.remove) if args.remove else 0
    except (glossary.GlossaryError, InvalidId, ValueError) as exc:
        print(f"s2st room glossary: {exc}")
        return 2
    if added or args.remove:
        print(f"{key}: {len(added)} set, {removed} removed")
    if args.list_terms or not (args.set_terms or args.remove):
        for term, target in (await glossary.list_terms(client, settings.keys, args.room,
                                                       args.lang)).items():
            print(f"{term}={target}")
    return 0


def _sessions(args: argparse.Namespace) -> int:
    from bus.connection import connect
    from bus.registry import Registry

    async def main(settings: BusSettings) -> int:
        client = await connect(settings)
        reg = Registry(client, settings.keys, cluster=settings.redis_cluster)
        rooms = [args.room] if args.room else await reg.rooms()
        for room in rooms:
            for s in await reg.sessions(room):
                print(f"{room}\t{s.session}\t{s.status}\tlang={s.source_lang}\tspeaker={s.speaker}")
        await client.aclose()
        return 0

    return run_async(args, main)


def _bench_bus(args: argparse.Namespace) -> int:
    from bus.bench import run_bench

    async def main(settings: BusSettings) -> int:
        await run_bench(settings, sessions=[int(x) for x in args.sessions.split(",")],
                        events=args.events, rate=args.rate, duration=args.duration,
                        json_path=args.json, workers_per_stage=args.workers)
        return 0

    return run_async(args, main)
