"""The state of the bus as plain data: what `s2st status` prints and the operator view of
`s2st web` shows (rooms and targets, sessions, workers with their health records, leases,
each stream's consumer groups with their lag and pending entries, dead letters per room).
"""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

from bus import clock
from bus.keys import Keys
from bus.text import as_text

WORKER_TTL_FACTOR = 3  # a worker whose heartbeat is older than 3 lease TTLs is gone


# a reply as text, showing what is there, even a name written by hand that is not UTF-8
_s = partial(as_text, errors="backslashreplace")


# -- collecting -----------------------------------------------------------------------------


async def collect(client: Any, keys: Keys, rooms: list[str] | None = None, *,
                  lease_ttl_s: float = 3.0, now: float | None = None) -> dict[str, Any]:
    """Everything `s2st status` shows, as plain data."""
    from bus.registry import Registry

    now = clock.now() if now is None else now
    registry = Registry(client, keys)
    names = rooms if rooms else await registry.rooms()
    return {
        "time": now,
        "prefix": keys.prefix,
        "workers": await _workers(client, keys, now, lease_ttl_s),
        "rooms": [await _room(client, keys, registry, room, now) for room in names],
    }


async def _workers(client: Any, keys: Keys, now: float,
                   lease_ttl_s: float) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    pattern = keys.workers("x")[:-1] + "*"
    for key in sorted({_s(k) async for k in client.scan_iter(match=pattern, count=500)}):
        stage = key.rsplit(":", 1)[1]
        rows = await client.zrange(key, 0, -1, withscores=True)
        health = {_s(k): _json(v) for k, v in (await client.hgetall(keys.health(stage))).items()}
        out[stage] = [
            {"id": _s(member), "age_s": round(now - float(score), 3),
             "alive": now - float(score) <= WORKER_TTL_FACTOR * lease_ttl_s,
             "health": health.get(_s(member), {})}
            for member, score in rows
        ]
    return out


def _json(raw: Any) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return {"unreadable": _s(raw)}


async def _room(client: Any, keys: Keys, registry: Any, room: str, now: float) -> dict[str, Any]:
    targets = []
    for lang, until in await client.zrange(keys.targets(room), 0, -1, withscores=True):
        pinned = math.isinf(until)
        targets.append({"lang": _s(lang), "pinned": pinned,
                        "left_s": None if pinned else round(float(until) - now, 1)})
    sessions = [
        {"session": s.session, "status": s.status, "source_lang": s.source_lang,
         "speaker": s.speaker, "started": s.started, "ended": s.ended or None,
         "reason": s.reason, "last_seen": s.last_seen or None}
        for s in await registry.sessions(room)
    ]
    prefix = keys.room(room)
    leases = []
    for key in sorted({_s(k) async for k in client.scan_iter(match=f"{prefix}:lease:*",
                                                            count=500)}):
        owner, ttl = await client.get(key), await client.pttl(key)
        if owner is not None:
            leases.append({"lease": keys.local_part(key).removeprefix("lease:"),
                           "owner": _s(owner), "ttl_ms": int(ttl)})
    streams = []
    for key in sorted({_s(k) async for k in client.scan_iter(match=f"{prefix}:*", count=500,
                                                            _type="STREAM")}):
        streams.append({"stream": keys.local_part(key), "length": int(await client.xlen(key)),
                        "groups": await _groups(client, key)})
    return {"room": room, "targets": targets, "sessions": sessions, "leases": leases,
            "streams": streams, "dead_letters": int(await client.xlen(keys.deadletter(room)))}


async def _groups(client: Any, key: str) -> list[dict[str, Any]]:
    groups = []
    for info in await client.xinfo_groups(key):
        row = {_s(k): v for k, v in info.items()}
        lag = row.get("lag")
        groups.append({"group": _s(row["name"]), "consumers": int(row.get("consumers", 0)),
                       "pending": int(row.get("pending", 0)),
                       "lag": None if lag is None else int(lag),
                       "last_delivered": _s(row.get("last-delivered-id", b""))})
    return groups


def stage_backlog(status: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per consumer group (a stage's group is named after it), over every room's streams in
    ``status`` (what :func:`collect` found): the streams it reads and their lag and pending
    entries summed; ``unknown_lag`` counts streams whose lag Redis could not tell."""
    out: dict[str, dict[str, int]] = {}
    for room in status["rooms"]:
        for stream in room["streams"]:
            for g in stream["groups"]:
                row = out.setdefault(g["group"], {"streams": 0, "lag": 0, "pending": 0,
                                                  "unknown_lag": 0})
                row["streams"] += 1
                row["pending"] += g["pending"]
                if g["lag"] is None:
                    row["unknown_lag"] += 1
                else:
                    row["lag"] += g["lag"]
    return out
