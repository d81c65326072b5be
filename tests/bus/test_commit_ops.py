"""The commit script calls (bus/runtime/commit_ops.py): built from commit items, no Redis."""

from __future__ import annotations

from typing import Any

import msgpack

from bus.keys import Keys, Partition
from bus.registry import SessionInfo
from bus.runtime.commit_ops import ITEMS_PER_CALL, CommitTarget, commit_call, group_items
from bus.runtime.ownership import CommitItem, Owned
from bus.stage import Emit, PartitionContext
from bus.testing import make_chunk

KEYS = Keys("T")
TARGET = CommitTarget(KEYS, "relay", "w1", "source")


def _owned(room: str, session: str) -> Owned:
    part = Partition(room, session)
    key = KEYS.stream("source", part)
    ctx = PartitionContext(stage="relay", worker_id="w1", family="source", partition=part,
                           keys=KEYS, client=None,
                           session=SessionInfo(room, session, "en"), targets=[])
    owned = Owned(part, key, KEYS.lease("relay", "source", part), ctx, KEYS.bell_of(key) or key)
    owned.wm_field = TARGET.wm_field(part)
    return owned


def _ops(call: tuple[list[str], list[Any]]) -> list[list[Any]]:
    """The operations of a call, their names and fields as text (events' fields left as
    packed: binary audio is packed as a string, as Lua's cmsgpack reads it)."""
    _keys, args = call
    assert isinstance(args[5], bytes)
    return [[x.decode() if isinstance(x, bytes) else x for x in op]
            for op in msgpack.unpackb(args[5], raw=True)]


def test_one_item_acks_writes_rings_and_finishes() -> None:
    owned = _owned("r1", "s1")
    out = KEYS.stream("relayed", owned.part)
    event = make_chunk("r1", "s1", 7)
    item = CommitItem(owned, "5-0", [Emit(out, event)], finish=True)
    keys, args = commit_call(TARGET, [item], now=1000.0)
    assert args[:5] == ["relay", "w1", "none", "0", 1]
    assert keys[0] == KEYS.progress("r1")
    ops = _ops((keys, args))
    lease, stream, output, bell = (keys.index(k) + 1 for k in (
        owned.lease_key, owned.key, out, KEYS.bell("r1", "relayed")))
    assert ops[0] == ["L", lease, owned.lease_key]
    assert ops[1] == ["A", stream, "5-0", owned.wm_field]
    assert ops[2] == ["B", output, bell]
    assert ops[3][:5] == ["E", output, KEYS.output_field("relay", out, "s1"), 7, 0]
    assert ops[4] == ["F", TARGET.fin_field(owned.part)]
    assert event.emitted == 1000.0
    # remembered for the next call
    assert owned.dedup_fields[out] == KEYS.output_field("relay", out, "s1")
    assert owned.bells[out] == KEYS.bell("r1", "relayed")


def test_a_bell_is_rung_once_per_output_and_a_lease_named_once_per_stream() -> None:
    owned = _owned("r1", "s1")
    out = KEYS.stream("relayed", owned.part)
    items = [CommitItem(owned, f"{i}-0", [Emit(out, make_chunk("r1", "s1", i), dedup=False)])
             for i in range(3)]
    ops = _ops(commit_call(TARGET, items, now=1.0))
    assert [op[0] for op in ops] == ["L", "A", "B", "E", "A", "E", "A", "E"]
    assert all(op[2] == "" for op in ops if op[0] == "E")  # no dedup field


def test_rooms_switch_the_progress_hash_and_dead_letters_go_to_the_room() -> None:
    a, b = _owned("r1", "s1"), _owned("r2", "s2")
    dead_item = CommitItem(b, "9-0", [])
    from bus.runtime.handler import dead_letter_for
    dead_item.dead = dead_letter_for(stage="relay", worker="w1", stream=b.key, entry_id="9-0",
                                     fields=[b"x", b"y"], error="bad", reason="malformed",
                                     attempts=0, session="s2")
    keys, args = commit_call(TARGET, [CommitItem(a, "1-0", []), dead_item], now=1.0)
    ops = _ops((keys, args))
    assert [op[0] for op in ops] == ["L", "A", "P", "L", "A", "E"]
    assert keys[ops[2][1] - 1] == KEYS.progress("r2")
    assert keys[ops[5][1] - 1] == KEYS.deadletter("r2")


def test_trimming_follows_retention_then_maxlen() -> None:
    owned = _owned("r1", "s1")
    item = [CommitItem(owned, "1-0", [])]
    by_window = CommitTarget(KEYS, "relay", "w1", "source", retention_s=60.0, maxlen=10)
    assert commit_call(by_window, item, now=100.0)[1][2:4] == ["minid", "40000"]
    by_length = CommitTarget(KEYS, "relay", "w1", "source", maxlen=10)
    assert commit_call(by_length, item, now=100.0)[1][2:4] == ["maxlen", "10"]


def test_items_are_grouped_by_room_and_cut_into_calls() -> None:
    a, b = _owned("r1", "s1"), _owned("r2", "s2")
    items = [CommitItem(a, "1-0", []), CommitItem(b, "1-0", []), CommitItem(a, "2-0", [])]
    per_room = group_items(items, cluster=True)
    assert [[i.owned for i in g] for g in per_room] == [[a, a], [b]]
    flat = group_items(items, cluster=False)
    assert [[i.owned for i in g] for g in flat] == [[a, a, b]]
    many = [CommitItem(a, f"{i}-0", []) for i in range(ITEMS_PER_CALL + 1)]
    assert [len(g) for g in group_items(many, cluster=False)] == [ITEMS_PER_CALL, 1]
