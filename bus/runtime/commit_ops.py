"""The calls of the commit script (bus/lua/commit.lua) for a batch of commit items: pure, no I/O.

One call's keys and arguments: the stage and worker, how to trim what is written, the room's
progress hash and a msgpack list of operations, in order:

* ``["P", progress]`` -- the items from here on are of another room (plain Redis only);
* ``["L", lease, lease_key]`` -- the items from here on are of the stream of this lease
  (fenced: none of them is written if the lease is not ours);
* ``["A", stream, entry_id, watermark_field]`` -- acknowledge an input entry;
* ``["B", output, bell]`` -- ring the output's bell once the call wrote to it;
* ``["E", output, dedup_field, seq, part, fields]`` -- write an event (deduplicated by
  ``dedup_field`` and (seq, part) when it has one);
* ``["F", finished_field]`` -- the stream's end marker was handled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from bus.keys import Keys, Partition
from bus.runtime.ownership import CommitItem

ITEMS_PER_CALL = 250  # commit items per script call on a plain Redis (about 15 ms of Redis)

Call = tuple[list[str], list[Any]]


@dataclass(frozen=True)
class CommitTarget:
    """What every call of one worker shares: its names, and how its outputs are trimmed."""

    keys: Keys
    stage: str
    worker_id: str
    family: str  # the stage's input family (its watermark and finished fields)
    retention_s: float = 0.0  # > 0: trim outputs to this window (MINID)
    maxlen: int = 0  # else > 0: trim outputs to this length

    def trim(self, now: float) -> tuple[str, str]:
        if self.retention_s > 0:
            return "minid", str(int((now - self.retention_s) * 1000))
        if self.maxlen > 0:
            return "maxlen", str(self.maxlen)
        return "none", "0"

    def fin_field(self, part: Partition) -> str:
        return self.keys.finished_field(self.stage, self.family, part)

    def wm_field(self, part: Partition) -> str:
        return self.keys.watermark_field(self.stage, self.family, part)


def group_items(items: Sequence[CommitItem], cluster: bool) -> list[list[CommitItem]]:
    """The items of one commit round, grouped into script calls. One call per room on a
    cluster (a room's keys share its slot; the rooms' calls run concurrently, so a room's
    items must not be split over two). On a plain Redis the whole batch, grouped by room (each
    stream's items keep their order), in calls of at most :data:`ITEMS_PER_CALL` items (a
    script holds Redis for every client while it runs), sent one after the other."""
    by_room: dict[str, list[CommitItem]] = {}
    for item in items:
        by_room.setdefault(item.owned.part.room, []).append(item)
    if cluster:
        return list(by_room.values())
    flat = [item for room_items in by_room.values() for item in room_items]
    return [flat[i:i + ITEMS_PER_CALL] for i in range(0, len(flat), ITEMS_PER_CALL)]


def commit_call(target: CommitTarget, items: Sequence[CommitItem], now: float) -> Call:
    """The keys and arguments of one commit.lua call for ``items`` (grouped by room). Sets
    each written event's ``emitted`` to ``now``; remembers output bells and dedup fields on
    the items' ownership records."""
    keys: list[str] = []
    index: dict[str, int] = {}

    def k(name: str) -> int:
        if name not in index:
            keys.append(name)
            index[name] = len(keys)
        return index[name]

    names = target.keys
    room = items[0].owned.part.room
    progress = k(names.progress(room))
    trim_mode, trim_value = target.trim(now)
    ops: list[list[Any]] = []
    belled: set[int] = set()  # outputs whose bell has its "B" op
    current = None
    for item in items:
        owned = item.owned
        if owned is not current:
            if owned.part.room != room:
                room = owned.part.room
                ops.append(["P", k(names.progress(room))])
            ops.append(["L", k(owned.lease_key), owned.lease_key])
            current = owned
        if item.entry_id is not None:
            ops.append(["A", k(owned.key), item.entry_id, owned.wm_field])
        for emit in item.emits:
            event = emit.event
            event.emitted = now
            out = k(emit.key)
            if out not in belled:
                belled.add(out)
                bell = owned.bells.get(emit.key, "")
                if bell == "":
                    bell = owned.bells[emit.key] = names.bell_of(emit.key)
                if bell is not None:
                    ops.append(["B", out, k(bell)])
            dedup = ""
            if emit.dedup:
                dedup = owned.dedup_fields.get(emit.key, "")
                if not dedup or event.session != owned.part.session:
                    dedup = names.output_field(target.stage, emit.key, event.session)
                    if event.session == owned.part.session:
                        owned.dedup_fields[emit.key] = dedup
            seq, part = event.order
            ops.append(["E", out, dedup, seq, part, event.to_flat()])
        if item.dead is not None:
            ops.append(["E", k(names.deadletter(room)), "", 0, 0, item.dead.to_flat()])
        if item.finish:
            ops.append(["F", target.fin_field(owned.part)])
    args = [target.stage, target.worker_id, trim_mode, trim_value, progress,
            msgpack.packb(ops, use_bin_type=False)]  # Lua cmsgpack reads no bin type
    return keys, args
