"""`s2st status`: the bus on one screen (or as JSON).

Rooms and their target languages, sessions (status, speaker, language), the workers of each
stage (from ``P:workers:<stage>``) with what they report as not running as configured
(``P:health:<stage>``: a model that could not load and its fallback, a pair with no route and
the spans it skipped), the leases held, every stream of a room with its consumer
groups' lag and pending counts (``XINFO GROUPS``), and dead letters per room.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bus.command import run_async
from bus.connection import redacted_url
from bus.settings import BusSettings, add_bus_options
from bus.status import WORKER_TTL_FACTOR as WORKER_TTL_FACTOR
from bus.status import collect as collect
from bus.status import stage_backlog as stage_backlog


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "status",
        help="rooms, sessions, workers, leases, stream lag and pending, dead letters",
        description="One screen on the state of the bus: rooms and targets, sessions, live "
        "workers per stage, leases held, each stream's length and its consumer groups' lag "
        "and pending entries (XINFO GROUPS), and dead letters per room.",
    )
    p.add_argument("--room", action="append", help="only this room (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    add_bus_options(p)
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    async def main(settings: BusSettings) -> int:
        from bus.connection import connect

        client = await connect(settings)
        try:
            status = await collect(client, settings.keys, args.room,
                                   lease_ttl_s=settings.lease_ttl_ms / 1000)
        finally:
            await client.aclose()
        status["redis"] = redacted_url(settings.redis_url)
        print(json.dumps(status, indent=2) if args.json else format_status(status))
        return 0

    return run_async(args, main)


# -- formatting -----------------------------------------------------------------------------


def format_status(status: dict[str, Any]) -> str:
    now = status["time"]
    lines = [f"bus {status.get('redis', '')}  prefix {status['prefix']}  "
             f"at {time.strftime('%H:%M:%S', time.localtime(now))}", "", "WORKERS"]
    if not status["workers"]:
        lines.append("  none registered")
    for stage, workers in sorted(status["workers"].items()):
        live = [w for w in workers if w["alive"]]
        shown = ", ".join(f"{w['id']} ({w['age_s']:.1f} s ago)" for w in live) or "-"
        gone = len(workers) - len(live)
        lines.append(f"  {stage:<6} {len(live)} live: {shown}" + (f"  ({gone} gone)" if gone
                                                                   else ""))
        for w in live:
            lines += _format_health(w["id"], w.get("health") or {})
    if not status["rooms"]:
        lines += ["", "no rooms (s2st room create ROOM --langs es)"]
    for room in status["rooms"]:
        lines += ["", *_format_room(room, now)]
    return "\n".join(lines)


def _format_room(room: dict[str, Any], now: float) -> list[str]:
    targets = ", ".join(
        f"{t['lang']} ({'pinned' if t['pinned'] else _left(t['left_s'])})" for t in room["targets"]
    ) or "none"
    lines = [f"ROOM {room['room']}   targets: {targets}   dead letters: {room['dead_letters']}"]
    active = sum(1 for s in room["sessions"] if s["status"] == "active")
    lines.append(f"  sessions: {active} active, {len(room['sessions']) - active} ended")
    for s in room["sessions"]:
        when = f"started {_ago(now - s['started'])}" if s["started"] else ""
        if s["status"] == "active" and s["last_seen"]:
            when += f", heartbeat {_ago(now - s['last_seen'])}"
        if s["ended"]:
            when += f", ended {_ago(now - s['ended'])} ({s['reason'] or 'stopped'})"
        speaker = f" speaker={s['speaker']}" if s["speaker"] else ""
        lines.append(f"    {s['session']:<28} {s['status']:<7} {s['source_lang']:<5}"
                     f"{speaker}  {when}")
    if room["leases"]:
        lines.append(f"  leases: {len(room['leases'])}")
        for lease in room["leases"]:
            lines.append(f"    {lease['lease']:<40} {lease['owner']}  "
                         f"({lease['ttl_ms'] / 1000:.1f} s left)")
    if room["streams"]:
        lines.append(f"  {'streams':<40} {'length':>7}  {'group':<6} {'lag':>5} {'pending':>7} "
                     "consumers")
        for st in room["streams"]:
            groups = st["groups"] or [None]
            for i, g in enumerate(groups):
                name = st["stream"] if i == 0 else ""
                length = str(st["length"]) if i == 0 else ""
                if g is None:
                    lines.append(f"    {name:<38} {length:>7}  -")
                    continue
                lag = "?" if g["lag"] is None else str(g["lag"])
                lines.append(f"    {name:<38} {length:>7}  {g['group']:<6} {lag:>5} "
                             f"{g['pending']:>7} {g['consumers']:>9}")
    return lines


_HEALTH_LABELS = {"unavailable": "cannot load", "fallback": "fallback route",
                  "no_route": "no route", "skipped": "spans skipped"}


def _format_health(worker: str, health: dict[str, Any]) -> list[str]:
    """A worker's health record, one line per item: ``! mt-1 no route en-de: ...``."""
    lines = []
    order = [*_HEALTH_LABELS, *sorted(set(health) - set(_HEALTH_LABELS))]
    for item in (i for i in order if i in health):
        value, label = health[item], _HEALTH_LABELS.get(item, item)
        entries = value.items() if isinstance(value, dict) else [("", value)]
        for name, text in entries:
            what = f"{label} {name}".strip()
            lines.append(f"    ! {worker} {what}: {' '.join(str(text).split())}")
    return lines


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _left(seconds: float | None) -> str:
    if seconds is None:
        return "pinned"
    return f"listener, {seconds:.0f} s left" if seconds > 0 else "expired"

