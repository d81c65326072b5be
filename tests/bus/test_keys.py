"""Key layout: a room's keys share one cluster slot; ids cannot escape the layout."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from bus.ids import InvalidId, check_id, check_lang
from bus.keys import Keys, Partition


def test_all_keys_of_a_room_share_a_slot() -> None:
    keys = Keys("s2st")
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
    keys = Keys("s2st")
    p = Partition("r1", "s1", "es")
    assert Keys.bell_of(keys.stream("translation", p)) == keys.bell("r1", "translation") == (
        "s2st:{r1}:bell:translation")
    assert Keys.bell_of(keys.room_stream("speech", "r1", "es")) == "s2st:{r1}:bell:speech"
    # keys that are not a family's streams have no bell
    for key in (keys.deadletter("r1"), keys.progress("r1"), keys.bell("r1", "audio"),
                keys.lease("asr", "audio", p), keys.announce):
        assert Keys.bell_of(key) is None, key
    # a family named like a layout word would collide with the bells or the leases
    for reserved in ("bell", "lease"):
        with pytest.raises(InvalidId, match="reserved"):
            keys.stream(reserved, p)
