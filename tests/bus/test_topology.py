"""bus.topology: a declared topology is validated, answers who writes and reads what, builds
the keys of its families, and the stage context refuses a family its stage does not write."""

from __future__ import annotations

from typing import Any

import pytest
from bus_helpers import fast_settings

from bus.harness import run_on_redis
from bus.harness import run_stage as run_memory
from bus.keys import Keys, Partition
from bus.registry import SessionInfo
from bus.stage import PartitionContext
from bus.testing import RelayStage, end_marker, make_chunk
from bus.topology import Family, Topology, TopologyError

STAGES = ("source", "first", "second", "third", "viewer")


def chain(*extra: Family, stages: tuple[str, ...] = STAGES) -> Topology:
    """source -> in -> first -> mid -> second -> out:<lang> -> third -> room:<lang> -> viewer."""
    return Topology(stages=stages, families=(
        Family("mid", writer="first", readers=("second", "viewer"), events=("m",)),
        Family("in", writer="source", readers=("first",), events=("i",)),
        Family("out", writer="second", readers=("third",), events=("o",), per_lang=True),
        Family("room", writer="third", readers=("viewer",), events=("r",),
               per_session=False, per_lang=True),
        *extra))


# -- validation --------------------------------------------------------------------------


def test_a_family_has_one_writer() -> None:
    with pytest.raises(TopologyError, match=r"declared twice.*: mid"):
        chain(Family("mid", writer="third", readers=("viewer",)))
    with pytest.raises(TopologyError, match="'x' has no writer"):
        chain(Family("x", writer="", readers=("viewer",)))


def test_writers_and_readers_are_stages_of_the_topology() -> None:
    with pytest.raises(TopologyError, match="writer 'ghost' is not a stage"):
        chain(Family("x", writer="ghost"))
    with pytest.raises(TopologyError, match="reader 'ghost' is not a stage"):
        chain(Family("x", writer="third", readers=("ghost",)))
    with pytest.raises(TopologyError, match="stages named twice: first"):
        chain(stages=(*STAGES, "first"))


def test_cycles_and_self_reads_are_refused() -> None:
    with pytest.raises(TopologyError, match="cycle in the topology"):
        chain(Family("back", writer="third", readers=("first",)))
    with pytest.raises(TopologyError, match="read by its own writer"):
        chain(Family("loop", writer="third", readers=("third",)))


def test_exactly_one_root() -> None:
    with pytest.raises(TopologyError, match=r"exactly one root.*'in', 'extra'"):
        chain(Family("extra", writer="other"), stages=(*STAGES, "other"))
    with pytest.raises(TopologyError, match="exactly one root family"):
        Topology(stages=("a", "b"), families=(Family("x", writer="a", readers=("b",)),
                                                Family("y", writer="b", readers=("a",))))


def test_bad_names_and_shapes() -> None:
    with pytest.raises(ValueError, match="reserved"):
        chain(Family("lease", writer="third"))
    with pytest.raises(ValueError):
        chain(Family("has space", writer="third"))
    with pytest.raises(TopologyError, match="room-wide family is per language"):
        chain(Family("x", writer="third", per_session=False))


# -- lookups -----------------------------------------------------------------------------


def test_lookups_follow_the_flow() -> None:
    t = chain()
    assert [f.name for f in t] == ["in", "mid", "out", "room"]  # declared mid first
    assert t.root.name == "in" and t.source == "source"
    assert t.workers == ("first", "second", "third")
    assert [f.name for f in t.writes("second")] == ["out"] and t.writes("viewer") == ()
    assert [f.name for f in t.reads("viewer")] == ["mid", "room"]
    assert [f.name for f in t.read_by("viewer", "third")] == ["mid", "out", "room"]
    assert t.input_of("third").name == "out"
    with pytest.raises(KeyError, match="reads 2 stream families"):
        t.input_of("viewer")
    assert t.upstream("third") == ("first", "second") and t.upstream("first") == ()
    assert [f.name for f in t.downstream("mid")] == ["out", "room"]
    assert t.may_write("first", "mid") and not t.may_write("first", "out")
    with pytest.raises(KeyError, match="no stream family 'nope'"):
        t.family("nope")


def test_keys_of_each_shape() -> None:
    t, keys = chain(), Keys("P")
    assert t.key(keys, "in", "r1", "s1") == "P:{r1}:in:s1"
    assert t.key(keys, "out", "r1", "s1", "es") == "P:{r1}:out:s1:es"
    assert t.key(keys, "room", "r1", lang="es") == "P:{r1}:room:es"
    assert t.family("room").key(keys, "r1", "s1", "es") == "P:{r1}:room:es"  # session ignored
    assert t.family("out").keys_of(keys, "r1", "s1", ["ca", "es"]) == [
        "P:{r1}:out:s1:ca", "P:{r1}:out:s1:es"]
    assert t.family("in").keys_of(keys, "r1", "s1", ["ca", "es"]) == ["P:{r1}:in:s1"]
    with pytest.raises(ValueError, match="per language: give a language"):
        t.key(keys, "out", "r1", "s1")
    with pytest.raises(ValueError, match="not per language"):
        t.key(keys, "in", "r1", "s1", "es")
    with pytest.raises(ValueError, match="per session: give a session"):
        t.key(keys, "mid", "r1")


def test_a_stage_reads_what_the_topology_says() -> None:
    t = chain()
    assert t.check_input("second", "mid", per_lang=False).name == "mid"
    assert t.check_input("third", "out", per_lang=True).name == "out"
    with pytest.raises(ValueError, match=r"stage 'second' may not read stream family 'in': "
                                         r"per the topology it reads 'mid' \(per session\)"):
        t.check_input("second", "in", per_lang=False)
    with pytest.raises(ValueError, match=r"stage 'third' reads 'out' .* per session"):
        t.check_input("third", "out", per_lang=False)
    with pytest.raises(ValueError, match=r"'viewer' reads 'room' .*room-wide"):
        t.check_input("viewer", "room", per_lang=True)


# -- the stage context checks writes -----------------------------------------------------


def _ctx(stage: str, topology: Topology | None) -> PartitionContext:
    return PartitionContext(
        stage=stage, worker_id="w", family="mid", partition=Partition("r1", "s1"),
        keys=Keys("P"), client=None, session=SessionInfo(room="r1", session="s1", source_lang="en"),
        targets=["es"], topology=topology)


def test_a_stage_may_ask_only_for_the_streams_it_writes() -> None:
    t = chain()
    assert _ctx("second", t).stream("out", "es") == "P:{r1}:out:s1:es"
    assert _ctx("third", t).room_stream("room", "es") == "P:{r1}:room:es"
    with pytest.raises(ValueError, match=r"stage 'second' may not write stream family 'room': "
                                         r"per the topology it writes 'out' \(per session, per "
                                         r"language\)"):
        _ctx("second", t).room_stream("room", "es")
    with pytest.raises(ValueError, match=r"stage 'viewer' may not write .* it writes nothing"):
        _ctx("viewer", t).stream("mid")
    with pytest.raises(ValueError, match="'third' asked for a per-session stream of 'room'"):
        _ctx("third", t).stream("room", "es")
    with pytest.raises(ValueError, match="'second' asked for a room-wide stream of 'out'"):
        _ctx("second", t).room_stream("out", "es")
    # no topology: no check (bare bus tests, benches)
    assert _ctx("viewer", None).stream("anything") == "P:{r1}:anything:s1"


@pytest.mark.parametrize("on", ["memory", "redis"])
async def test_a_stage_writing_an_undeclared_family_gets_the_error(
        on: str, request: pytest.FixtureRequest) -> None:
    """In memory (bus.harness) as through a real Worker: the handler fails, its entries are
    dead-lettered with the error naming stage, family and what it may write."""
    t = Topology(stages=("source", "relay", "viewer"), families=(
        Family("audio", writer="source", readers=("relay",)),
        Family("declared", writer="relay", readers=("viewer",))))
    chunks = [make_chunk("r1", "s1", 0), end_marker("r1", "s1", seq=1)]

    async def run_stage(stage: RelayStage, entries: list[Any], **kw: Any) -> Any:
        if on == "memory":
            return await run_memory(stage, entries, **kw)
        return await run_on_redis(stage, entries, fast_settings(
            request.getfixturevalue("local_redis"), max_attempts=1), **kw)

    good = await run_stage(RelayStage("relay", "audio", "declared"), chunks, topology=t)
    assert not good.dead and len(good.stream("declared")) == 2 and good.finished
    bad = await run_stage(RelayStage("relay", "audio", "relayed"), chunks, topology=t)
    with pytest.raises(ValueError, match="stage 'relay' may not read stream family 'b2'"):
        await run_stage(RelayStage("relay", "b2", "declared"), chunks, topology=t)
    assert not bad.emits and bad.dead
    assert all("stage 'relay' may not write stream family 'relayed'" in d.error
               and "'declared'" in d.error for d in bad.dead)
    # without a topology the same stage writes where it likes
    free = await run_stage(RelayStage("relay", "audio", "relayed"), chunks)
    assert not free.dead and len(free.stream("relayed")) == 2
