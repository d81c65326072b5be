"""The operator view of `s2st web` (``/admin`` and ``/api/admin/*``, admin token).

:meth:`AdminView.overview` is what the page polls: `s2st status`'s own collection
(:func:`bus.status.collect`: rooms, targets, sessions, workers with their health records,
each stream's consumer groups) folded for a page: the live sessions of each room, each
stage's workers with the lag and pending entries of its groups summed over every stream
(:func:`bus.status.stage_backlog`), the latency of the last minute (:class:`LatencyWindow`)
and the dead letters (:func:`dead_letters`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from bus.deadletters import dead_entry
from bus.events import MalformedEvent, Speech, decode
from bus.keys import Keys
from bus.status import collect, stage_backlog
from bus.text import as_text
from pipeline import PIPELINE
from player_agent.latency import percentile

LATENCY_WINDOW_S = 60.0
RECENT_ENDED_S = 300.0  # an ended session stays on the page this long
DEAD_SCANNED = 100  # the dead letters of each room counted by stage and reason (the latest)
DEAD_SHOWN = 8
CACHE_S = 1.0  # pages polling at once share one collection
_PAGE = 200
_MAX_PAGES = 20  # per stream and update: a backlog larger than this is caught up over polls
# the room-wide stream the latency is measured on: what the players read (pipeline/__init__.py)
[_SPEECH] = PIPELINE.reads("player")

LATENCY_MEASURES = ("end of a segment's source audio (its capture_end) to the first piece of "
                    "its translated speech written to the room's speech stream (Redis's time "
                    "of the XADD): capture, ASR, MT and TTS, before the listener's jitter "
                    "buffer and playback")


class LatencyWindow:
    """Segment latency over the last ``window_s``: for the first piece (part 0) of each
    segment on a room's ``speech:<lang>`` stream, its entry id's time (when Redis added it)
    minus the capture end of the source audio it translates. Each stream is read from a
    cursor, so each piece is read once by this server."""

    def __init__(self, window_s: float = LATENCY_WINDOW_S) -> None:
        self.window_s = window_s
        self._cursors: dict[str, str] = {}
        self._samples: list[tuple[float, str, str, float]] = []  # (at, room, lang, latency)

    async def update(self, client: Any, keys: Keys, streams: list[tuple[str, str]],
                     now: float) -> None:
        """Reads what was added to the ``(room, lang)`` speech streams since the last call."""
        since_ms = int((now - self.window_s) * 1000)
        keys_now = {_SPEECH.key(keys, room, lang=lang) for room, lang in streams}
        self._cursors = {k: v for k, v in self._cursors.items() if k in keys_now}
        for room, lang in streams:
            key = _SPEECH.key(keys, room, lang=lang)
            start = self._cursors.get(key, "")
            if not start or _id_ms(start.lstrip("(")) < since_ms:
                start = f"{since_ms}-0"
            for _ in range(_MAX_PAGES):
                batch = await client.xrange(key, start, "+", count=_PAGE)
                for raw_id, fields in batch:
                    self._add(as_text(raw_id), fields, room, lang)
                if batch:
                    start = self._cursors[key] = "(" + as_text(batch[-1][0])
                if len(batch) < _PAGE:
                    break
        self._samples = [s for s in self._samples if s[0] >= now - self.window_s]

    def _add(self, entry_id: str, fields: Any, room: str, lang: str) -> None:
        try:
            event = decode(fields)
        except (MalformedEvent, ValueError):
            return
        if isinstance(event, Speech) and event.part == 0 and event.capture_end > 0:
            at = _id_ms(entry_id) / 1000
            self._samples.append((at, room, lang, at - event.capture_end))

    def summary(self) -> dict[str, Any]:
        by: dict[tuple[str, str], list[float]] = {}
        for _at, room, lang, latency in self._samples:
            by.setdefault((room, lang), []).append(latency)
        return {"window_s": self.window_s, "measures": LATENCY_MEASURES,
                **_figures([s[3] for s in self._samples]),
                "by_lang": [{"room": room, "lang": lang, **_figures(values)}
                            for (room, lang), values in sorted(by.items())]}


def _figures(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"segments": 0, "p50": None, "p95": None, "max": None}
    return {"segments": len(values), "p50": round(percentile(values, 50), 3),
            "p95": round(percentile(values, 95), 3), "max": round(max(values), 3)}


async def dead_letters(client: Any, keys: Keys, rooms: list[dict[str, Any]], *,
                       scanned: int = DEAD_SCANNED, shown: int = DEAD_SHOWN) -> dict[str, Any]:
    """Each room's dead-letter count (``rooms`` as :func:`collect` gives them), the latest
    ``scanned`` of each room counted by stage and reason, and the latest ``shown``."""
    counts: Counter[tuple[str, str]] = Counter()
    latest: list[dict[str, Any]] = []
    for room in rooms:
        if not room["dead_letters"]:
            continue
        for raw_id, fields in await client.xrevrange(keys.deadletter(room["room"]),
                                                     count=scanned):
            entry = dead_entry(raw_id, fields)
            if entry is not None:
                counts[(entry["stage"], entry["reason"])] += 1
                latest.append({"room": room["room"], **entry})
    latest.sort(key=lambda e: e["failed_at"], reverse=True)
    return {"total": sum(r["dead_letters"] for r in rooms), "scanned_per_room": scanned,
            "by": [{"stage": stage, "reason": reason, "count": n}
                   for (stage, reason), n in sorted(counts.items())],
            "latest": latest[:shown]}


class AdminView:
    def __init__(self, client: Any, keys: Keys, *, lease_ttl_s: float = 3.0) -> None:
        self.r = client
        self.keys = keys
        self.lease_ttl_s = lease_ttl_s
        self.latency = LatencyWindow()
        self._lock = asyncio.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def invalidate(self) -> None:
        self._cached = None

    async def overview(self) -> dict[str, Any]:
        async with self._lock:  # one collection at a time: the latency cursors are shared
            if self._cached is not None and time.monotonic() - self._cached[0] < CACHE_S:
                return self._cached[1]
            data = await self._collect()
            self._cached = (time.monotonic(), data)
            return data

    async def _collect(self) -> dict[str, Any]:
        status = await collect(self.r, self.keys, lease_ttl_s=self.lease_ttl_s)
        now = status["time"]
        backlog = stage_backlog(status)
        none = {"streams": 0, "lag": 0, "pending": 0, "unknown_lag": 0}
        stages = {stage: {"live": sum(1 for w in status["workers"].get(stage, []) if w["alive"]),
                          "workers": status["workers"].get(stage, []),
                          **backlog.get(stage, none)}
                  for stage in sorted(set(status["workers"]) | set(backlog))}
        speech = [(room["room"], stream["stream"].split(":", 1)[1])
                  for room in status["rooms"] for stream in room["streams"]
                  if stream["stream"].startswith("speech:")]
        await self.latency.update(self.r, self.keys, speech, now)
        rooms = [{"room": room["room"], "targets": room["targets"],
                  "dead_letters": room["dead_letters"],
                  "sessions": [_session(s, now) for s in room["sessions"]
                               if s["status"] == "active"
                               or now - (s["ended"] or 0) < RECENT_ENDED_S]}
                 for room in status["rooms"]]
        return {"time": now, "prefix": status["prefix"], "rooms": rooms, "stages": stages,
                "latency": self.latency.summary(),
                "dead_letters": await dead_letters(self.r, self.keys, status["rooms"])}


def _session(s: dict[str, Any], now: float) -> dict[str, Any]:
    active = s["status"] == "active"
    return {"session": s["session"], "speaker": s["speaker"], "lang": s["source_lang"],
            "state": s["status"], "reason": s["reason"],
            "age_s": round(now - s["started"], 1) if s["started"] else None,
            "heartbeat_s": round(now - s["last_seen"], 1) if active and s["last_seen"] else None,
            "ended_s": None if active or not s["ended"] else round(now - s["ended"], 1)}


def _id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])

