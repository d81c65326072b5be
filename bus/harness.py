"""Run a stage's handler in memory: given events in, its emits out (no Worker, no Redis server).

:func:`run_stage` hands the events to ``stage`` the way the runtime hands one owned stream's
entries (``bus.runtime``): each event is written as stream fields, then decoded and handed to
``handle`` by the runtime's own per-entry code (:func:`~bus.runtime.handle_entry`, as a Worker
runs it), with retries up to ``max_attempts``; ``Reject``, undecodable entries, exhausted retries
and entries after the end marker become dead letters (:func:`~bus.runtime.dead_letter_for`, same
reasons and errors); deduplicated emits are written only above the last (seq, part) written to that stream, as the
commit script does; ``ctx.publish`` writes at once. ``setup``, ``on_acquire``, ``on_release``
and ``teardown`` are called around the run.

Read-back methods of the context (``ctx.read``, ``ctx.last``, ``ctx.handled_until``) and stages
that read Redis themselves (``ctx.redis``) are served by an in-process fake Redis (fakeredis,
a test dependency) holding the input stream and everything emitted; pass ``client=`` to
start from prepared streams or to use a real one. Without fakeredis such a stage fails with a
:class:`HarnessError` naming the command it wanted.

What the harness does not model: leases, takeover, commit atomicity, concurrency between
streams, retry back-off, trimming. Test those through :class:`bus.runtime.Worker`
(``bus.testing.run_worker``). :func:`run_on_redis` runs the same events through a real Worker
and returns the same :class:`HarnessResult`, so one test body can run on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bus import clock
from bus.events import ControlEvent, DeadLetter, Event, decode, decode_event
from bus.keys import Keys, Partition
from bus.registry import SessionInfo
from bus.runtime.handler import RetryPolicy, dead_letter_for, handle_entry
from bus.settings import BusSettings
from bus.stage import Delivery, Emit, PartitionContext, Stage
from bus.text import as_text
from bus.topology import Topology

# What run_stage takes as an input entry: an event, or raw stream fields (to test bad input).
Entry = Event | Mapping[str, Any]


class HarnessError(RuntimeError):
    """The stage needs something the in-memory harness cannot give it."""


@dataclass
class HarnessResult:
    """What one run produced: per output stream, the events written there, in order."""

    keys: Keys
    partition: Partition
    emits: dict[str, list[Event]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0  # deduplicated emits not written (not above the last one written)
    finished: bool = False  # the end marker was handled

    def stream(self, family: str, lang: str | None = None) -> list[Event]:
        """The events written to this session's stream of ``family`` (per language)."""
        p = self.partition
        return self.emits.get(self.keys.stream(family, Partition(p.room, p.session, lang)), [])

    def room_stream(self, family: str, lang: str) -> list[Event]:
        """The events written to the room's stream of ``family`` in ``lang``."""
        return self.emits.get(self.keys.room_stream(family, self.partition.room, lang), [])

    @property
    def events(self) -> list[Event]:
        """Every event written, stream by stream."""
        return [e for events in self.emits.values() for e in events]


class NoRedis:
    """``ctx.redis`` when fakeredis is not installed (or ``client=NoRedis()``, to show that a
    stage needs no Redis): any command raises a HarnessError naming it."""

    def __getattr__(self, name: str) -> Any:
        raise HarnessError(
            f"this stage reads Redis itself (ctx.redis.{name}): install fakeredis "
            "(the 'test' extra) or pass client= (a real Redis) to run_stage")


def fake_client() -> Any:
    """A fresh in-process fake Redis (fakeredis: its own server, empty), or a stand-in that
    explains its absence."""
    try:
        from fakeredis import FakeAsyncRedis, FakeServer
    except ImportError:
        return NoRedis()
    return FakeAsyncRedis(server=FakeServer())


class _Run:
    """One stream's entries through one stage, with the runtime's per-entry rules."""

    def __init__(self, stage: Stage, ctx: PartitionContext, settings: BusSettings,
                 result: HarnessResult, worker_id: str) -> None:
        self.stage, self.ctx, self.settings = stage, ctx, settings
        self.result, self.worker_id = result, worker_id
        self.policy = RetryPolicy.of(settings)
        self.last: dict[tuple[str, str], tuple[int, int]] = {}  # (stream, session) -> written

    async def write(self, emits: Iterable[Emit]) -> None:
        now = clock.now()
        for emit in emits:
            event = emit.event
            if emit.dedup:
                seen = self.last.get((emit.key, event.session))
                if seen is not None and event.order <= seen:
                    self.result.duplicates += 1
                    continue
                self.last[(emit.key, event.session)] = event.order
            event.emitted = now  # as the commit does
            self.result.emits.setdefault(emit.key, []).append(event)
            await self._xadd(emit.key, event.to_fields())

    async def _xadd(self, key: str, fields: Mapping[str, Any]) -> str:
        if isinstance(self.ctx.redis, NoRedis):
            return "0-0"
        return as_text(await self.ctx.redis.xadd(key, dict(fields)))

    async def dead_letter(self, entry_id: str, fields: list[Any], error: str, reason: str,
                          attempts: int) -> None:
        p = self.ctx.partition
        dead = dead_letter_for(
            stage=self.stage.name, worker=self.worker_id, stream=self.ctx.input_key,
            entry_id=entry_id, fields=fields, error=error, reason=reason, attempts=attempts,
            session=p.session)
        self.result.dead.append(dead)
        await self._xadd(self.ctx.keys.deadletter(p.room), dead.to_fields())

    async def handle(self, entry_id: str, fields: list[Any]) -> None:
        """What a Worker does with one entry of its stream (the same rules:
        :func:`bus.runtime.handle_entry`), without the bus."""
        if self.result.finished:
            await self.dead_letter(entry_id, fields, "after the end of its stream", "late", 0)
            return
        await handle_entry(_Delivering(self, entry_id, fields), self.policy, entry_id=entry_id,
                           stream=self.ctx.input_key, fields=fields,
                           part=self.ctx.partition, attempts=0,
                           max_event_bytes=self.settings.max_event_bytes)

    async def _mark_handled(self, entry_id: str) -> None:
        if isinstance(self.ctx.redis, NoRedis):
            return
        ctx = self.ctx
        await ctx.redis.hset(ctx.keys.progress(ctx.partition.room),
                             ctx.keys.watermark_field(ctx.stage, ctx.family, ctx.partition),
                             entry_id)


class _Delivering:
    """One entry on its way through the stage in the harness (a handler Target): no back-off
    between attempts, the emits written at once, the entry marked handled."""

    def __init__(self, run: _Run, entry_id: str, fields: list[Any]) -> None:
        self.run, self.entry_id, self.fields = run, entry_id, fields

    def before(self, delivery: Delivery) -> None:
        pass

    async def call(self, delivery: Delivery) -> list[Emit]:
        run = self.run
        limit = asyncio.timeout(run.policy.timeout_s)
        try:
            async with limit:
                return await run.stage.handle(run.ctx, delivery)
        except TimeoutError:
            if limit.expired():  # worded as the runtime's watchdog words it
                raise run.policy.timeout_error() from None
            raise

    async def handled(self, delivery: Delivery, emits: list[Emit], seconds: float) -> None:
        await self.run.write(emits)
        await self.run._mark_handled(self.entry_id)
        self.run.result.finished = delivery.is_end

    async def dead_letter(self, error: str, reason: str, attempts: int) -> None:
        await self.run.dead_letter(self.entry_id, self.fields, error, reason, attempts)

    def on_failure(self, delivery: Delivery, exc: BaseException, attempts: int) -> None:
        pass

    def keep_going(self) -> bool:
        return True

    async def back_off(self, seconds: float) -> None:
        pass


async def run_stage(
    stage: Stage,
    events: Iterable[Entry],
    *,
    room: str | None = None,
    session: str | SessionInfo | None = None,
    lang: str | None = None,
    langs: Iterable[str] = (),
    source_lang: str = "en",
    client: Any = None,
    settings: BusSettings | None = None,
    worker_id: str = "harness",
    setup: bool = True,
    ticks: int = 0,
    topology: Topology | None = None,
) -> HarnessResult:
    """Hand ``events`` (one stream: a session, or a session and ``lang``) to ``stage`` in order
    and return what it wrote.

    ``room``/``session`` default to the first event's; ``session`` may be a full
    :class:`SessionInfo`. ``langs``: the room's target languages (``ctx.targets``).
    ``ctx.more_pending`` is true while more of ``events`` follow (they were all written
    before the stage read them, as one read). ``ticks``: call ``on_tick`` this many times
    after the last event. ``setup=False`` skips ``setup``/``teardown`` (a stage built ready).
    ``topology``: check the stage's writes against it, as the workers do (bus/topology.py).
    """
    if topology is not None:
        topology.check_input(stage.name, stage.input_family, stage.per_lang)
    entries = list(events)
    first = next((e for e in entries if isinstance(e, Event)), None)
    room = room or (first.room if first else "room")
    if isinstance(session, SessionInfo):
        info = session
    else:
        sid = session or (first.session if first else "session")
        info = SessionInfo(room=room, session=sid, source_lang=source_lang)
    settings = settings or BusSettings(key_prefix="H")
    keys = settings.keys
    part = Partition(room, info.session, lang)
    ctx = PartitionContext(
        stage=stage.name, worker_id=worker_id, family=stage.input_family, partition=part,
        keys=keys, client=client if client is not None else fake_client(), session=info,
        targets=list(langs), topology=topology)
    result = HarnessResult(keys, part)
    run = _Run(stage, ctx, settings, result, worker_id)

    async def publish(emits: list[Emit]) -> bool:
        await run.write(emits)
        return True

    ctx._publish = publish
    flats: list[tuple[str, list[Any]]] = []
    for n, entry in enumerate(entries):  # written first, as they would be on the bus
        fields: Mapping[Any, Any] = entry.to_fields() if isinstance(entry, Event) else entry
        entry_id = await run._xadd(ctx.input_key, fields)
        if entry_id == "0-0":
            entry_id = f"{n + 1}-0"
        else:  # read back: the fields as Redis returns them
            [(_id, fields)] = await ctx.redis.xrange(ctx.input_key, entry_id, entry_id)
        flats.append((entry_id, [x for pair in fields.items() for x in pair]))
    if setup:
        await stage.setup()
    try:
        await stage.on_acquire(ctx)
        for n, (entry_id, flat) in enumerate(flats):
            ctx.more_pending = n + 1 < len(flats)
            await run.handle(entry_id, flat)
        for _ in range(ticks):
            await run.write(await stage.on_tick(ctx, clock.now()))
        await stage.on_release(ctx)
    finally:
        if setup:
            await stage.teardown()
    return result


async def run_on_redis(
    stage: Stage,
    events: Iterable[Entry],
    settings: BusSettings,
    *,
    lang: str | None = None,
    langs: Iterable[str] = (),
    source_lang: str = "en",
    timeout_s: float = 30.0,
    topology: Topology | None = None,
) -> HarnessResult:
    """The other backend of :func:`run_stage`: the same events through a real
    :class:`~bus.runtime.Worker` on the Redis of ``settings`` (use a scratch ``key_prefix``:
    everything under it is deleted afterwards). The session is registered (its room with
    ``langs`` as targets), the events written to its input stream, and the worker runs until
    its group has acknowledged them all; every stream of the room it wrote is collected.
    ``topology``: the worker checks the stage's writes against it."""
    from bus.registry import Registry
    from bus.testing import run_worker, scratch_client

    entries = list(events)
    first = next(e for e in entries if isinstance(e, Event))
    keys = settings.keys
    part = Partition(first.room, first.session, lang)
    key = keys.stream(stage.input_family, part)
    async with scratch_client(settings) as client:
        registry = Registry(client, keys, cluster=settings.redis_cluster)
        await registry.create_room(part.room, list(langs))
        await registry.register_session(part.room, part.session, source_lang)
        last = ""
        for entry in entries:
            fields = entry.to_fields() if isinstance(entry, Event) else entry
            last = as_text(await client.xadd(key, dict(fields)))
        bell = keys.bell_of(key)
        if bell is not None:
            await client.xadd(bell, {"keys": key})

        async def consumed() -> bool:
            if not await client.exists(key):
                return False
            return any(as_text(g["name"]) == stage.name and int(g["pending"]) == 0
                       and as_text(g["last-delivered-id"]) == last
                       for g in await client.xinfo_groups(key))

        async with run_worker(stage, settings, topology=topology):
            async with asyncio.timeout(timeout_s):
                while not await consumed():
                    await asyncio.sleep(0.05)
        result = HarnessResult(keys, part)
        dead_key = keys.deadletter(part.room)
        async for raw in client.scan_iter(match=f"{keys.room(part.room)}:*"):
            name = as_text(raw)
            if name in (key, dead_key) or keys.local_part(name).startswith("bell:") \
                    or as_text(await client.type(name)) != "stream":
                continue
            result.emits[name] = [decode_event(f) for _id, f in await client.xrange(name)]
        for _id, f in await client.xrange(dead_key):
            dead = decode(f)
            if isinstance(dead, DeadLetter):
                result.dead.append(dead)
        result.finished = any(isinstance(e, ControlEvent) and e.action == "end"
                              for e in result.events)
        return result


def run_stage_sync(stage: Stage, events: Iterable[Entry], **kw: Any) -> HarnessResult:
    """:func:`run_stage` from synchronous code (a plain test, a notebook)."""
    return asyncio.run(run_stage(stage, events, **kw))
