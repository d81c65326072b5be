"""Key layout: a room's keys share one cluster slot; ids cannot escape the layout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from redis.crc import key_slot

from bus.ids import InvalidId, check_id, check_lang
from bus.keys import BELL_MAXLEN, Keys, Partition


def test_all_keys_of_a_room_share_a_slot() -> None:
    keys = Keys("s2st", cluster=True)
    p = Partition("room-1", "sess.A")
    pl = Partition("room-1", "sess.A", "es")
    room_keys = [
        keys.room_meta("room-1"), keys.targets("room-1"), keys.sessions("room-1"),
        keys.status("room-1"), keys.alive("room-1"), keys.progress("room-1"),
        keys.deadletter("room-1"), keys.stream("audio", p), keys.stream("transcript", p),
        keys.stream("translation", pl), keys.room_stream("speech", "room-1", "es"),
        keys.lease("asr", "audio", p), keys.bell("room-1", "audio"),
    ]
    assert len({key_slot(k.encode()) for k in room_keys}) == 1
    other = keys.stream("audio", Partition("room-2", "sess.A"))
    assert key_slot(other.encode()) != key_slot(room_keys[0].encode())
    assert keys.stream("translation", pl) == "s2st:{room-1}:translation:sess.A:es"
    assert keys.room_of(keys.stream("audio", p)) == "room-1"


@pytest.mark.parametrize("bad", ["", "a}b", "{x", "a:b", "a b", "-lead", "x" * 65, "ü", "a\n",
                                 "a*", "../etc"])
def test_bad_ids_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidId):
        check_id(bad)
    with pytest.raises((InvalidId, ValueError)):
        Partition(bad, "s")
    with pytest.raises((InvalidId, ValueError)):
        Keys().stream("audio", Partition("r", bad))


@pytest.mark.parametrize("good", ["r1", "Room_2", "a.b-c", "0", "x" * 64])
def test_good_ids(good: str) -> None:
    assert check_id(good) == good


def test_languages_and_prefix() -> None:
    assert check_lang("pt-BR") == "pt-BR"
    assert check_lang("auto", allow_auto=True) == "auto"
    for bad in ["auto", "EN", "e", "es_ES", "es:x", "{es}"]:
        with pytest.raises(InvalidId):
            check_lang(bad)
    with pytest.raises(ValueError):
        Keys("a{b}")


def test_bells_of_streams_and_reserved_family_names() -> None:
    p = Partition("r1", "s1", "es")
    # a plain Redis: one bell per family for every room (a commit that spans rooms rings its
    # readers once)
    keys = Keys("s2st")
    assert keys.bell_of(keys.stream("translation", p)) == keys.bell("r1", "translation") == (
        keys.bell("r2", "translation")) == "s2st:bell:translation"
    assert keys.bell_of(keys.room_stream("speech", "r1", "es")) == "s2st:bell:speech"
    # a cluster: one per room, in the room's slot (rung atomically with the room's writes)
    on_cluster = Keys("s2st", cluster=True)
    assert on_cluster.bell_of(keys.stream("translation", p)) == (
        on_cluster.bell("r1", "translation")) == "s2st:{r1}:bell:translation"
    assert key_slot(on_cluster.bell("r1", "audio").encode()) == key_slot(
        keys.stream("audio", p).encode())
    assert on_cluster.bell_of(keys.room_stream("speech", "r1", "es")) == "s2st:{r1}:bell:speech"
    # keys that are not a family's streams (or not of this prefix) have no bell
    for layout in (keys, on_cluster):
        for key in (keys.deadletter("r1"), keys.progress("r1"), layout.bell("r1", "audio"),
                    keys.lease("asr", "audio", p), keys.announce,
                    Keys("other").stream("audio", p)):
            assert layout.bell_of(key) is None, key
    with pytest.raises(InvalidId):
        keys.bell("r{1}", "audio")
    # a family named like a layout word would collide with the bells or the leases
    for reserved in ("bell", "lease"):
        with pytest.raises(InvalidId, match="reserved"):
            keys.stream(reserved, p)


def test_the_scripts_trim_the_bells_as_the_python_writers_do() -> None:
    lua = Path(__file__).parents[2] / "bus" / "lua"
    found = {path.name: re.findall(r'"MAXLEN", "~", "(\d+)"', path.read_text())
             for path in lua.glob("*.lua")}
    assert found["commit.lua"] and found["expire_session.lua"], found
    assert {int(n) for names in found.values() for n in names} == {BELL_MAXLEN}
