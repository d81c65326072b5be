"""What a worker owns: one record per stream it holds the lease of, and the book of them all.

No I/O here: the records are read and changed by the leases, reading, handler and committer
modules; :class:`Holdings` is the one place that says which streams are held, which finished
and which were lost (and so may not be taken again until what was sent for them came back).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bus.events import DeadLetter
from bus.keys import Partition
from bus.stage import Emit, PartitionContext


class OwnershipState(StrEnum):
    """Why an owned stream is being given up (or was released): the ``reason`` middleware's
    ``on_release`` sees. ``None`` on a record: held, not being given up."""

    LOST = "lost"  # the lease is gone: stop at once, write nothing more
    SHED = "shed"  # more than the fair share: handed on to another worker
    STOPPED = "stopped"  # the worker is stopping
    REMOVED = "removed"  # the session is no longer registered
    ERROR = "error"  # the stream's task crashed
    FINISHED = "finished"  # (release only) its end marker was handled
    DONE = "done"  # (release only) its task ended without any of the above


@dataclass
class Entry:
    """One input entry read (or recovered) and not yet handled."""

    entry_id: str
    fields: list[Any] | None  # flat [name, value, ...] as Redis returns it; None: trimmed
    attempts: int = 0


@dataclass
class CommitItem:
    """What handling one entry (or a tick, or a publish) wrote: committed atomically with the
    input's acknowledgement by the committer."""

    owned: Owned
    entry_id: str | None
    emits: list[Emit]
    dead: DeadLetter | None = None
    finish: bool = False
    done: asyncio.Future[bool] | None = None  # set when the caller waits for the commit

    def waited(self) -> CommitItem:
        self.done = asyncio.get_running_loop().create_future()
        return self


class Owned:
    """A stream this worker holds the lease of."""

    def __init__(self, part: Partition, key: str, lease_key: str, ctx: PartitionContext,
                 bell: str) -> None:
        self.part = part
        self.key = key
        self.lease_key = lease_key
        self.ctx = ctx
        self.queue: deque[Entry] = deque()
        self.inflight = 0  # read from Redis, not yet committed
        self.ready = False  # recovery done: the fetch loop may read new entries
        self.closing: OwnershipState | None = None  # why it is being given up
        self.finished = False
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.slot = ""
        self.deadline: float | None = None  # perf_counter() by which the running handler ends
        self.timed_out = False  # the watchdog cancelled the handler
        self.wm_field = ""  # this stream's watermark field in the room's progress hash
        self.dedup_fields: dict[str, str] = {}  # output key -> its dedup field
        self.maybe_more = True  # the stream may hold entries this worker has not read yet
        self.bell = bell  # rung by whoever writes to the stream
        self.bells: dict[str, str | None] = {}  # output key -> its bell
        self.last_read = "0-0"  # the last entry queued (read or recovered) by this ownership
        self.reread = False  # a read's reply was lost: read our own pending ones again

    def give_up(self, why: OwnershipState) -> None:
        """Start giving the stream up for ``why`` (its task leaves once its queue is done)."""
        self.closing = why
        self.wake.set()


class Holdings:
    """The streams a worker holds, those it knows finished, and those it lost lately; with the
    counts of commits and fenced reads sent and come back (a lost stream is not taken again
    while one sent before the loss may still land)."""

    def __init__(self) -> None:
        self.owned: dict[Partition, Owned] = {}
        self.by_key: dict[str, Owned] = {}
        self.finished: set[Partition] = set()
        self.lost_at: dict[Partition, tuple[int, int]] = {}  # lost: commits, reads sent by then
        self.commits_sent = 0  # commit round trips sent, and come back (or failed)
        self.commits_back = 0
        self.fetches_sent = 0  # fenced reads sent, and come back (or failed)
        self.fetches_back = 0

    def add(self, owned: Owned) -> None:
        self.owned[owned.part] = owned
        self.by_key[owned.key] = owned

    def remove(self, owned: Owned) -> bool:
        """Forget ``owned``; False if it is not (any more) the holding of its stream."""
        if self.owned.get(owned.part) is not owned:
            return False
        del self.owned[owned.part]
        self.by_key.pop(owned.key, None)
        return True

    def lose(self, owned: Owned) -> None:
        """Our lease is gone: stop at once, keep nothing, write nothing more."""
        if owned.closing == OwnershipState.LOST:
            return
        owned.give_up(OwnershipState.LOST)
        owned.queue.clear()
        # The lease holds our worker id, so once this worker takes the stream again, a commit
        # of what it did before the loss, or a read it sent before, would pass the fence (and
        # a read landing in the middle of the new owner's recovery puts new entries before
        # the pending ones: the watermark then skips those). Nothing of this ownership is
        # committed or queued from now on, and the stream is not taken again until every
        # commit and read already sent has come back.
        self.lost_at[owned.part] = (self.commits_sent, self.fetches_sent)

    def may_take_again(self, part: Partition) -> bool:
        """False while a commit or read of a lost ownership of ``part`` may be on its way."""
        lost_at = self.lost_at.get(part)
        if lost_at is None:
            return True
        if self.commits_back < lost_at[0] or self.fetches_back < lost_at[1]:
            return False
        del self.lost_at[part]
        return True

    def in_flight(self) -> bool:
        """Something read and not committed yet, in any held stream."""
        return any(o.inflight for o in self.owned.values())
