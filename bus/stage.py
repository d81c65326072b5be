"""What a stage worker plugs into the consumer runtime.

A :class:`Stage` names its consumer group, the stream family it reads (one
stream per session, or per session and language) and handles one entry at a
time per stream, in order, returning the events to write: its ``handle``
forwards end markers, ignores other control events and passes the data events
it ``accepts`` to ``on_event``.  The runtime does the rest: ownership, recovery, atomic hand-off, retries, dead letters,
trimming, metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import ResponseError

from bus import clock
from bus.events import ControlEvent, Event, Hop, decode_event
from bus.keys import Keys, Partition
from bus.text import as_text

if TYPE_CHECKING:
    from bus.registry import SessionInfo
    from bus.topology import Topology

E = TypeVar("E", bound=Event)


@dataclass
class Emit:
    """An event to add to ``key``.  With ``dedup`` the runtime writes it only if its
    (session, stage, seq, part) is above the last one this stage wrote there."""

    key: str
    event: Event
    dedup: bool = True


class Reject(Exception):
    """Raise from ``handle`` (or ``on_event``) for input that can never succeed (bad text,
    unsupported language pair): the entry is dead-lettered at once instead of being retried."""


@dataclass
class Delivery:
    """One input entry handed to a stage."""

    entry_id: str
    stream: str
    event: Event
    attempts: int = 0  # earlier failed or interrupted attempts
    retry: bool = False  # this worker already handed it to the stage (and it failed)
    t_in: float = field(default_factory=clock.now)

    @property
    def is_end(self) -> bool:
        return isinstance(self.event, ControlEvent) and self.event.action == "end"


class PartitionContext:
    """What a stage sees of one owned stream: names, session, per-stream state.

    ``topology``: the pipeline's declared topology (:mod:`bus.topology`); with it,
    :meth:`stream` and :meth:`room_stream` refuse (ValueError) a family the stage does not
    write. None (bare bus tests, benches): no check."""

    def __init__(
        self, *, stage: str, worker_id: str, family: str, partition: Partition, keys: Keys,
        client: Any, session: SessionInfo, targets: list[str],
        topology: Topology | None = None,
    ) -> None:
        self.stage = stage
        self.worker_id = worker_id
        self.family = family
        self.partition = partition
        self.keys = keys
        self.redis = client
        self.session = session
        self.targets = targets
        self.topology = topology
        self.state: Any = None  # the stage's own per-stream state
        self.more_pending = False  # more entries of this stream are queued behind this one
        self._publish: Callable[[list[Emit]], Awaitable[bool]] | None = None
        self._streams: dict[tuple[str, str | None], str] = {}
        self._room_streams: dict[tuple[str, str], str] = {}

    async def publish(self, emits: list[Emit]) -> bool:
        """Write ``emits`` now, before ``handle`` returns (e.g. the first piece of a long
        synthesis), with the same fencing and deduplication; the input is acknowledged
        only when ``handle`` returns.  False if the stream was lost meanwhile."""
        if self._publish is None:
            raise RuntimeError("publish() is only available inside a running worker")
        return await self._publish(emits)

    @property
    def input_key(self) -> str:
        return self.keys.stream(self.family, self.partition)

    def stream(self, family: str, lang: str | None = None) -> str:
        """This session's stream of another family (optionally per language): one this
        stage writes, per the topology (if given)."""
        key = self._streams.get((family, lang))
        if key is None:  # checked and built once: stages ask for it per event
            if self.topology is not None:
                self.topology.check_write(self.stage, family, room_wide=False)
            p = self.partition
            key = self._streams[(family, lang)] = self.keys.stream(
                family, Partition(p.room, p.session, lang))
        return key

    def room_stream(self, family: str, lang: str) -> str:
        """The room's stream of ``family`` in ``lang`` (all sessions): one this stage
        writes, per the topology (if given)."""
        key = self._room_streams.get((family, lang))
        if key is None:
            if self.topology is not None:
                self.topology.check_write(self.stage, family, room_wide=True)
            key = self._room_streams[(family, lang)] = self.keys.room_stream(
                family, self.partition.room, lang)
        return key

    def derive(self, cls: type[E], source: Event, *, t_in: float, **fields: Any) -> E:
        """A new event of ``cls`` carrying ``source``'s session, capture times and trace,
        plus a hop for this stage (``t_out`` is now)."""
        base: dict[str, Any] = {
            "room": source.room,
            "session": source.session,
            "capture_start": source.capture_start,
            "capture_end": source.capture_end,
            "trace": [*source.trace, Hop(stage=self.stage, worker=self.worker_id, t_in=t_in,
                                         t_out=clock.now())],
        }
        base.update(fields)
        return cls(**base)

    def end_marker(self, source: Event, *, t_in: float, seq: int = 0) -> ControlEvent:
        """The end-of-stream marker to forward downstream."""
        reason = source.reason if isinstance(source, ControlEvent) else ""
        return self.derive(ControlEvent, source, t_in=t_in, seq=seq, action="end", reason=reason)

    async def handled_until(self) -> str | None:
        """Id of the last input entry of this stream whose outputs were written (by any
        owner); entries after it are pending or new and will be delivered again."""
        raw = await self.redis.hget(
            self.keys.progress(self.partition.room),
            self.keys.watermark_field(self.stage, self.family, self.partition))
        return as_text(raw) if raw else None

    async def acknowledged_end(self) -> str | None:
        """The newest end bound (as for ``read_reverse``) of the input entries this stage's
        group has acknowledged: just before its first pending entry, else its last delivered
        one; None if the group has not acknowledged anything (or does not exist yet)."""
        key = self.input_key
        try:
            pending = await self.redis.xpending(key, self.stage)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return None  # nobody read the stream yet
            raise
        if pending and int(pending.get("pending") or 0) > 0:
            return "(" + as_text(pending["min"])
        end = ""
        for group in await self.redis.xinfo_groups(key):
            if as_text(group["name"]) == self.stage:
                end = as_text(group["last-delivered-id"])
        return None if end in ("", "0-0") else end

    async def read(self, key: str, start: str = "-", end: str = "+",
                   count: int | None = None) -> list[tuple[str, Event]]:
        """Read (and decode) a range of a stream, skipping entries that do not decode."""
        return _decoded(await self.redis.xrange(key, start, end, count=count))

    async def read_reverse(self, key: str, end: str = "+", start: str = "-",
                           count: int | None = None) -> list[tuple[str, Event]]:
        """Like ``read``, newest first: up to ``count`` entries from ``end`` back to ``start``
        (undecodable ones count and are skipped)."""
        return _decoded(await self.redis.xrevrange(key, end, start, count=count))

    async def newest_first(self, key: str, end: str = "+",
                           batch: int = 200) -> AsyncIterator[tuple[str, Event]]:
        """Every decodable entry of a stream from ``end`` back to its start, newest first, read
        ``batch`` entries at a time (stop iterating to stop reading)."""
        while True:
            raw = await self.redis.xrevrange(key, end, "-", count=batch)
            for item in _decoded(raw):
                yield item
            if len(raw) < batch:
                return
            end = "(" + as_text(raw[-1][0])

    async def last(self, key: str) -> tuple[str, Event] | None:
        """The last decodable entry of a stream (e.g. this stage's last output)."""
        entries = await self.read_reverse(key, count=20)
        return entries[0] if entries else None


def _decoded(raw: list[Any]) -> list[tuple[str, Event]]:
    """Stream entries as (id, event), skipping those that do not decode."""
    out = []
    for entry_id, fields in raw:
        try:
            out.append((as_text(entry_id), decode_event(fields)))
        except ValueError:  # MalformedEvent included
            continue
    return out


class Stage:
    """Base class of a stage.

    ``handle`` dispatches each input entry: the end marker to ``on_end`` (by default the end
    marker is forwarded to ``end_outputs``), other control events (start, targets) to
    ``on_control`` (by default ignored), and data events, once checked against ``accepts``
    (else :class:`Reject` with ``wrong_input``), to ``on_event``: a stage overrides
    ``on_event`` and declares ``accepts`` and ``end_outputs``; the other hooks are optional.
    A stage may still override ``handle`` itself (e.g. to do something before any entry and
    then call ``super().handle``).
    """

    name: str = "stage"
    input_family: str = ""  # every stage names the family it reads (the Worker refuses none)
    per_lang: bool = False
    tick_interval_s: float | None = None  # call on_tick this often per owned stream
    accepts: tuple[type[Event], ...] = (Event,)  # the data events on_event takes
    # the Reject message for another data event ({stage}: name, {type}: the event's type)
    wrong_input: str = "the {stage} stage does not read {type!r} events"

    async def setup(self) -> None:
        """Load models and the like, once per process, before any stream is owned."""

    async def on_acquire(self, ctx: PartitionContext) -> None:
        """A stream was acquired: rebuild ``ctx.state`` (e.g. from this stage's last output)."""

    async def handle(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        """One input entry: dispatched to ``on_end``, ``on_control`` or ``on_event``."""
        event = delivery.event
        if delivery.is_end:
            return await self.on_end(ctx, delivery)
        if isinstance(event, ControlEvent):
            return await self.on_control(ctx, delivery)
        if not isinstance(event, self.accepts):
            raise Reject(self.wrong_input.format(stage=self.name, type=event.type))
        return await self.on_event(ctx, event, delivery)

    async def on_event(self, ctx: PartitionContext, event: Event,
                       delivery: Delivery) -> list[Emit]:
        """A data event of one of the ``accepts`` types: the stage's work."""
        raise NotImplementedError

    async def on_control(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        """A control event other than the end marker (start, targets): ignored by default."""
        return []

    async def on_end(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        """The end marker: by default forwarded to ``end_outputs`` (see ``forward_end``)."""
        return self.forward_end(ctx, delivery)

    def end_outputs(self, ctx: PartitionContext) -> list[str]:
        """The streams the end marker of ``ctx``'s stream is forwarded to (none by default)."""
        return []

    def forward_end(self, ctx: PartitionContext, delivery: Delivery, *,
                    seq: int | None = None) -> list[Emit]:
        """The end marker (``seq``: the input marker's unless given) to each of
        ``end_outputs``, not deduplicated."""
        source = delivery.event
        marker = ctx.end_marker(source, t_in=delivery.t_in,
                                seq=source.seq if seq is None else seq)
        return [Emit(key, marker, dedup=False) for key in self.end_outputs(ctx)]

    async def on_tick(self, ctx: PartitionContext, now: float) -> list[Emit]:
        """Time passed with no input (e.g. flush text held for a clause boundary)."""
        return []

    async def on_release(self, ctx: PartitionContext) -> None:
        """The stream is no longer ours (shed, finished or lost)."""

    async def teardown(self) -> None:
        """The worker is stopping."""

    def health(self) -> dict[str, Any]:
        """What operators should know of this worker because it is not running as configured
        (a backend that could not load and what replaced it, input it cannot handle): plain
        JSON data, empty when all is well. The runtime publishes it when it changes
        (``P:health:<stage>``) and `s2st status` shows it. Called on the event loop: keep
        it cheap."""
        return {}
