"""A pipeline's topology: which participant writes and reads which stream family.

A :class:`Topology` declares, once, the stream families of a pipeline (:class:`Family`:
per session or room-wide, per language or not, the event types it carries, its one
writer and its readers) and the participants (``stages``: the session source that writes
the first family, the consumer stages, and readers outside the bus runtime such as a
web page). Everything that walks the layout (ACL rules, replays, exports, views, feeds)
iterates over it instead of spelling family names, and the runtime refuses a stage that
asks for a stream of a family the topology does not let it write.

Nothing here knows what flows through the pipeline: the concrete one is declared by the
application (e.g. ``pipeline.PIPELINE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bus.ids import check_name
from bus.keys import Keys, Partition


class TopologyError(ValueError):
    """A topology that does not hold together (two writers, unknown reader, a cycle...)."""


@dataclass(frozen=True)
class Family:
    """One stream family.

    ``per_session``: one stream per session (``P:{room}:<name>:<session>[:<lang>]``), else
    one per room (``P:{room}:<name>:<lang>``, every session's entries; room-wide families
    are per language, the only room-wide layout of :class:`bus.keys.Keys`). ``per_lang``:
    one stream per target language. ``events``: the type names of the events it carries
    (besides control events such as end markers). ``writer``: the one participant that
    writes it; ``readers``: who reads it (stages through the runtime, or anyone else)."""

    name: str
    writer: str
    readers: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    per_session: bool = True
    per_lang: bool = False

    @property
    def room_wide(self) -> bool:
        return not self.per_session

    def key(self, keys: Keys, room: str, session: str | None = None,
            lang: str | None = None) -> str:
        """The key of one stream of this family. A per-session family needs ``session``; a
        per-language family needs ``lang``; a room-wide one ignores ``session``."""
        if self.per_lang and lang is None:
            raise ValueError(f"stream family {self.name!r} is per language: give a language")
        if not self.per_lang and lang is not None:
            raise ValueError(f"stream family {self.name!r} is not per language (got {lang!r})")
        if self.room_wide:
            assert lang is not None
            return keys.room_stream(self.name, room, lang)
        if session is None:
            raise ValueError(f"stream family {self.name!r} is per session: give a session")
        return keys.stream(self.name, Partition(room, session, lang))

    def keys_of(self, keys: Keys, room: str, session: str | None = None,
                langs: Iterable[str] = ()) -> list[str]:
        """The keys of this family for one session (or room) and ``langs`` (used only by a
        per-language family)."""
        if self.per_lang:
            return [self.key(keys, room, session, lang) for lang in langs]
        return [self.key(keys, room, session)]


@dataclass(frozen=True)
class Topology:
    """The families of a pipeline and its participants (``stages``), validated when built.

    Rules: names are valid and unique; each family has exactly one writer and it is a known
    participant, and so is every reader; no family is read by its own writer; exactly one
    family (the root) is written by a participant that reads none (the session source);
    the graph stage -> family -> reader has no cycle."""

    families: tuple[Family, ...]
    stages: tuple[str, ...]
    _order: tuple[Family, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "stages", tuple(self.stages))
        for stage in self.stages:
            check_name(stage, "stage")
        if len(set(self.stages)) != len(self.stages):
            raise TopologyError(f"stages named twice: {_twice(self.stages)}")
        names = [f.name for f in self.families]
        if len(set(names)) != len(names):
            raise TopologyError(f"stream families declared twice (each has one writer): "
                                f"{_twice(names)}")
        for f in self.families:
            check_name(f.name, "stream family")
            Keys().bell("r", f.name)  # a usable family name (not reserved by the key layout)
            if not f.writer:
                raise TopologyError(f"stream family {f.name!r} has no writer")
            if f.writer not in self.stages:
                raise TopologyError(f"stream family {f.name!r}: writer {f.writer!r} is not a "
                                    f"stage of the topology ({', '.join(self.stages)})")
            for reader in f.readers:
                if reader not in self.stages:
                    raise TopologyError(f"stream family {f.name!r}: reader {reader!r} is not "
                                        f"a stage of the topology ({', '.join(self.stages)})")
            if f.writer in f.readers:
                raise TopologyError(f"stream family {f.name!r} is read by its own writer "
                                    f"{f.writer!r}")
            if f.room_wide and not f.per_lang:
                raise TopologyError(f"stream family {f.name!r}: a room-wide family is per "
                                    "language (the key layout has no other room stream)")
        roots = [f for f in self.families if not self.reads(f.writer)]
        if len(roots) != 1:
            raise TopologyError("expected exactly one root family (written by a stage that "
                                f"reads none), found {[f.name for f in roots] or 'none'}")
        object.__setattr__(self, "_order", self._sorted())

    def _sorted(self) -> tuple[Family, ...]:
        """Families along the flow (each after the families its writer reads); a cycle is
        an error."""
        order: list[Family] = []
        state: dict[str, int] = {}  # 1: visiting, 2: done

        def visit(f: Family, path: tuple[str, ...]) -> None:
            if state.get(f.name) == 2:
                return
            if state.get(f.name) == 1:
                raise TopologyError(f"cycle in the topology: {' -> '.join((*path, f.name))}")
            state[f.name] = 1
            for g in self.reads(f.writer):
                visit(g, (*path, f.name))
            state[f.name] = 2
            order.append(f)

        for f in self.families:
            visit(f, ())
        return tuple(order)

    # -- lookups -------------------------------------------------------------------------
    def family(self, name: str) -> Family:
        for f in self.families:
            if f.name == name:
                return f
        raise KeyError(f"no stream family {name!r} in the topology "
                       f"({', '.join(f.name for f in self.families)})")

    def __iter__(self) -> Iterator[Family]:
        """The families along the flow: the root first, each after those its writer reads
        (declaration order among equals)."""
        return iter(self._order)

    def flow(self) -> tuple[Family, ...]:
        return self._order

    @property
    def root(self) -> Family:
        """The family the session source writes: the one read first."""
        return self._order[0]

    @property
    def source(self) -> str:
        """The participant writing the root family."""
        return self.root.writer

    def writes(self, stage: str) -> tuple[Family, ...]:
        return tuple(f for f in self._order if f.writer == stage)

    def reads(self, stage: str) -> tuple[Family, ...]:
        return tuple(f for f in self.families if stage in f.readers)

    def may_write(self, stage: str, family: str) -> bool:
        return any(f.name == family for f in self.writes(stage))

    @property
    def workers(self) -> tuple[str, ...]:
        """The stages that read a family and write one (the consumer stages), along the flow."""
        out: list[str] = []
        for f in self._order:
            for reader in f.readers:
                if self.writes(reader) and reader not in out:
                    out.append(reader)
        return tuple(out)

    def input_of(self, stage: str) -> Family:
        """The one family a consumer stage reads."""
        read = self.reads(stage)
        if len(read) != 1:
            raise KeyError(f"stage {stage!r} reads {len(read)} stream families, not one")
        return read[0]

    def upstream(self, stage: str) -> tuple[str, ...]:
        """The consumer stages before ``stage`` along the flow."""
        workers = self.workers
        return workers[:workers.index(stage)]

    def downstream(self, family: str) -> tuple[Family, ...]:
        """The families written, directly or not, from ``family`` (after it along the flow)."""
        found: set[str] = set()
        todo = [family]
        while todo:
            name = todo.pop()
            for reader in self.family(name).readers:
                for g in self.writes(reader):
                    if g.name not in found:
                        found.add(g.name)
                        todo.append(g.name)
        return tuple(f for f in self._order if f.name in found)

    def read_by(self, *readers: str) -> tuple[Family, ...]:
        """The families read by any of ``readers``, along the flow."""
        return tuple(f for f in self._order if set(readers) & set(f.readers))

    def check_write(self, stage: str, family: str, *, room_wide: bool | None = None) -> Family:
        """The family ``stage`` may write, or a ValueError naming what it may write.
        ``room_wide``: also check the family's shape (a per-session stream asked of a
        room-wide family, or the reverse)."""
        allowed = self.writes(stage)
        f = next((f for f in allowed if f.name == family), None)
        if f is None:
            what = ", ".join(_describe(f) for f in allowed) or "nothing"
            raise ValueError(f"stage {stage!r} may not write stream family {family!r}: "
                             f"per the topology it writes {what}")
        if room_wide is not None and room_wide != f.room_wide:
            asked = "a room-wide stream" if room_wide else "a per-session stream"
            raise ValueError(f"stage {stage!r} asked for {asked} of {_describe(f)}")
        return f

    def check_input(self, stage: str, family: str, per_lang: bool) -> Family:
        """The family a consumer stage reads, or a ValueError if ``stage`` does not read
        ``family`` (in that shape) per the topology: checked when a worker is built."""
        f = next((f for f in self.reads(stage) if f.name == family), None)
        if f is None:
            what = ", ".join(_describe(f) for f in self.reads(stage)) or "nothing"
            raise ValueError(f"stage {stage!r} may not read stream family {family!r}: per the "
                             f"topology it reads {what}")
        if not f.per_session or f.per_lang != per_lang:
            raise ValueError(f"stage {stage!r} reads {_describe(f)} "
                             f"{'per language' if per_lang else 'per session'}")
        return f

    # -- keys ----------------------------------------------------------------------------
    def key(self, keys: Keys, family: str, room: str, session: str | None = None,
            lang: str | None = None) -> str:
        return self.family(family).key(keys, room, session, lang)


def _describe(f: Family) -> str:
    shape = "room-wide" if f.room_wide else "per session"
    return f"{f.name!r} ({shape}{', per language' if f.per_lang else ''})"


def _twice(names: Iterable[str]) -> str:
    names = list(names)
    return ", ".join(sorted({n for n in names if names.count(n) > 1}))
