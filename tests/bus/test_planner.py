"""The acquisition planner (bus/runtime/planner.py): plain data in, decisions out, no Redis."""

from __future__ import annotations

from bus.keys import Partition
from bus.registry import SessionInfo
from bus.runtime.planner import (
    Held,
    Snapshot,
    fair_share,
    plan,
    removed_sessions,
    split_held,
    wanted,
)


def _info(room: str, session: str, status: str = "active") -> SessionInfo:
    return SessionInfo(room=room, session=session, source_lang="en", status=status)


def _keep_order(items: list[tuple[Partition, SessionInfo]]) -> None:
    """A shuffle that keeps the order (the tests read the candidates as given)."""


def _parts(n: int, room: str = "r1") -> list[Partition]:
    return [Partition(room, f"s{i}") for i in range(n)]


def _wanted(parts: list[Partition]) -> list[tuple[Partition, SessionInfo]]:
    return [(p, _info(p.room, p.session)) for p in parts]


def test_wanted_lists_each_session_stream_less_the_finished() -> None:
    snapshot = {"r1": (["es", "fr"], [_info("r1", "a"), _info("r1", "b", "ended")]),
                "r2": ([], [_info("r2", "c")])}
    finished = {Partition("r1", "b")}
    got = wanted(snapshot, finished, per_lang=False)
    assert [p for p, _i in got] == [Partition("r1", "a"), Partition("r2", "c")]
    assert got[0][1].session == "a"


def test_wanted_per_language_has_one_stream_per_target() -> None:
    snapshot: Snapshot = {"r1": (["es", "fr"], [_info("r1", "a")]),
                          "r2": ([], [_info("r2", "c")])}
    got = [p for p, _i in wanted(snapshot, {Partition("r1", "a", "fr")}, per_lang=True)]
    assert got == [Partition("r1", "a", "es")]  # a room without targets has no stream


def test_removed_sessions_are_the_held_ones_no_longer_registered() -> None:
    snapshot: Snapshot = {"r1": ([], [_info("r1", "a")])}
    held = [Partition("r1", "a"), Partition("r1", "gone", "es"), Partition("r9", "x")]
    assert removed_sessions(held, snapshot) == {("r1", "gone"), ("r9", "x")}
    assert removed_sessions([], snapshot) == set()


def test_split_held_keeps_the_order_of_each_part() -> None:
    parts = _parts(4)
    ours, others = split_held(_wanted(parts), {parts[3]: object(), parts[1]: object()})
    assert [p for p, _ in ours] == [parts[1], parts[3]]
    assert [p for p, _ in others] == [parts[0], parts[2]]


def test_fair_share_rounds_up_and_counts_at_least_one_worker() -> None:
    assert fair_share(0, 3) == 0
    assert fair_share(10, 3) == 4
    assert fair_share(9, 3) == 3
    assert fair_share(5, 0) == 5


def test_a_lone_worker_takes_everything() -> None:
    parts = _parts(5)
    p = plan(_wanted(parts), [], live_workers=1, shuffle=_keep_order)
    assert p.share == 5 and p.shed == [] and p.capacity == 5
    assert [part for part, _ in p.candidates] == parts


def test_a_worker_takes_only_its_share_and_not_what_it_holds() -> None:
    parts = _parts(6)
    held = [Held(parts[0]), Held(parts[1])]
    p = plan(_wanted(parts), held, live_workers=2, shuffle=_keep_order)
    assert p.share == 3 and p.shed == [] and p.capacity == 1
    assert [part for part, _ in p.candidates] == parts[2:]


def test_extras_are_shed_newest_first() -> None:
    parts = _parts(4)
    held = [Held(p) for p in parts]  # in the order acquired
    p = plan(_wanted(parts), held, live_workers=2, shuffle=_keep_order)
    assert p.share == 2
    assert p.shed == [parts[3], parts[2]]
    assert p.capacity == 0 and p.candidates == []


def test_streams_being_given_up_count_for_nothing_and_are_no_candidates() -> None:
    parts = _parts(4)
    held = [Held(parts[0]), Held(parts[1], closing=True)]
    p = plan(_wanted(parts), held, live_workers=1, shuffle=_keep_order)
    assert p.shed == []
    assert p.capacity == 3  # share 4, one held that stays
    assert [part for part, _ in p.candidates] == parts[2:]  # not parts[1]: still held


def test_nothing_wanted_sheds_everything_held() -> None:
    parts = _parts(2)
    p = plan([], [Held(parts[0]), Held(parts[1])], live_workers=1, shuffle=_keep_order)
    assert p.share == 0 and p.shed == [parts[1], parts[0]] and p.capacity == 0


def test_candidates_are_shuffled_by_the_given_shuffle() -> None:
    parts = _parts(3)
    p = plan(_wanted(parts), [], live_workers=1, shuffle=lambda items: items.reverse())
    assert [part for part, _ in p.candidates] == list(reversed(parts))
