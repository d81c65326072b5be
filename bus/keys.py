"""The Redis key layout.

Every key of a room carries the room id as a Redis Cluster hash tag
(``s2st:{room}:...``), so all of a room's streams, leases and progress records
live in one hash slot: a stage can write its outputs and acknowledge its input
in one atomic script even on a cluster, and rooms spread over the shards.
Only the few global keys (room set, announcements, worker registry and, on a
plain Redis, the bells) sit outside a room's slot.  docs/architecture.md lists every key with its writer,
readers and retention.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.ids import InvalidId, check_id, check_lang, check_name


@dataclass(frozen=True, order=True)
class Partition:
    """The unit of ownership: one session's stream of one family (and language)."""

    room: str
    session: str
    lang: str | None = None

    def __post_init__(self) -> None:
        check_id(self.room, "room id")
        check_id(self.session, "session id")
        if self.lang is not None:
            check_lang(self.lang)

    @property
    def suffix(self) -> str:
        return self.session if self.lang is None else f"{self.session}:{self.lang}"

    def __str__(self) -> str:
        return f"{self.room}/{self.suffix}"


# A bell is a wake-up, not a record: it keeps about this many entries (bus/lua/*.lua keep the
# same). A reader that finds this many new ones may have missed some (trimmed before it came
# back): it then looks at every stream of that bell.
BELL_MAXLEN = 1000

# names under a room that are not stream families
_RESERVED = frozenset({"bell", "lease"})


def _family(family: str) -> str:
    check_name(family, "stream family")
    if family in _RESERVED:
        raise InvalidId(f"invalid stream family {family!r}: reserved for the key layout")
    return family


class Keys:
    """Builds every key name from a prefix (default ``s2st``).

    ``cluster``: the layout of a Redis Cluster, where the bells are per room (in the room's
    slot, rung atomically with the room's writes); on a plain Redis there is one bell per
    stream family for all rooms (see :meth:`bell`)."""

    def __init__(self, prefix: str = "s2st", *, cluster: bool = False) -> None:
        if not prefix or any(c in prefix for c in "{}: \t\n"):
            raise ValueError(f"invalid key prefix {prefix!r}")
        self.prefix = prefix
        self.cluster = cluster

    # -- global keys -------------------------------------------------------
    @property
    def rooms(self) -> str:
        return f"{self.prefix}:rooms"

    @property
    def announce(self) -> str:
        return f"{self.prefix}:announce"

    def workers(self, stage: str) -> str:
        return f"{self.prefix}:workers:{check_name(stage, 'stage')}"

    def health(self, stage: str) -> str:
        """Hash of a stage's workers that are not running as configured: worker id -> JSON
        (``Stage.health``: a model that could not load, a pair with no route...)."""
        return f"{self.prefix}:health:{check_name(stage, 'stage')}"

    # -- per-room keys (all in the room's hash slot) -------------------------
    def room(self, room: str) -> str:
        return f"{self.prefix}:{{{check_id(room, 'room id')}}}"

    def room_meta(self, room: str) -> str:
        return f"{self.room(room)}:meta"

    def targets(self, room: str) -> str:
        return f"{self.room(room)}:targets"

    def sessions(self, room: str) -> str:
        return f"{self.room(room)}:sessions"

    def status(self, room: str) -> str:
        return f"{self.room(room)}:status"

    def alive(self, room: str) -> str:
        return f"{self.room(room)}:alive"

    def progress(self, room: str) -> str:
        return f"{self.room(room)}:progress"

    def deadletter(self, room: str) -> str:
        return f"{self.room(room)}:deadletter"

    def stream(self, family: str, part: Partition) -> str:
        """A per-session stream, e.g. ``s2st:{r1}:audio:s1`` or ``s2st:{r1}:translation:s1:es``."""
        return f"{self.room(part.room)}:{_family(family)}:{part.suffix}"

    def room_stream(self, family: str, room: str, lang: str) -> str:
        """A room-wide stream of one language, e.g. ``s2st:{r1}:speech:es``."""
        return f"{self.room(room)}:{_family(family)}:{check_lang(lang)}"

    def bell(self, room: str, family: str) -> str:
        """The wake-up stream of the streams of one family: whoever adds entries to those
        streams adds one entry here listing the stream keys (``keys``, space-separated), and
        workers block on the bells instead of on every stream.

        On a plain Redis one bell serves every room (``s2st:bell:audio``): a worker blocks on
        one key per family, and a commit spanning rooms rings it once. (Redis before 7.2
        answers a blocked XREAD over several keys with the first key written only, so with
        one bell per room a commit touching ten rooms would wake its readers ten times.) On a
        cluster each room has its own (``s2st:{r1}:bell:audio``), in the room's slot."""
        if self.cluster:
            return f"{self.room(room)}:bell:{_family(family)}"
        check_id(room, "room id")
        return f"{self.prefix}:bell:{_family(family)}"

    def bell_of(self, stream_key: str) -> str | None:
        """The bell of a room stream (``s2st:{r1}:audio:s1`` -> ``s2st:bell:audio``, or
        ``s2st:{r1}:bell:audio`` on a cluster); None for a key that is not a room stream of a
        family."""
        head, sep, rest = stream_key.partition("}:")
        family, sep2, _ = rest.partition(":")
        if not sep or not sep2 or family in _RESERVED or not head.startswith(self.prefix + ":{"):
            return None
        if self.cluster:
            return f"{head}}}:bell:{family}"
        return f"{self.prefix}:bell:{family}"

    def lease(self, stage: str, family: str, part: Partition) -> str:
        return f"{self.room(part.room)}:lease:{check_name(stage, 'stage')}:{family}:{part.suffix}"

    def room_of(self, key: str) -> str:
        """The room id inside a room key's hash tag."""
        start = key.find("{")
        end = key.find("}", start + 1)
        if not key.startswith(self.prefix + ":{") or start < 0 or end < 0:
            raise ValueError(f"not a room key: {key!r}")
        return key[start + 1 : end]

    def local_part(self, key: str) -> str:
        """What follows the room's hash tag in a room key (``audio:s1``)."""
        return key.split("}:", 1)[1]

    # -- fields of a room's progress hash -------------------------------------------------
    @staticmethod
    def watermark_field(stage: str, family: str, part: Partition) -> str:
        """Id of the last input entry of ``part`` whose outputs ``stage`` wrote."""
        return f"wm|{stage}|{family}:{part.suffix}"

    @staticmethod
    def finished_field(stage: str, family: str, part: Partition) -> str:
        """Set once ``stage`` handled the end marker of ``part``."""
        return f"fin|{stage}|{family}:{part.suffix}"

    def output_field(self, stage: str, out_key: str, session: str) -> str:
        """``seq:part`` of the last deduplicated output ``stage`` wrote for ``session``."""
        return f"out|{stage}|{self.local_part(out_key)}|{session}"

