"""Ordering, de-duplication and deadlines for speech pieces: pure logic, no I/O, no clock.

Pieces of one room and language arrive on one stream, several sessions (speakers)
interleaved.  Within a session a piece is identified by ``(seq, part)``: ``seq`` is the
translation it speaks, ``part`` counts its pieces, ``last`` marks the final one.  Seqs
are increasing but need not be contiguous (a translation may be skipped upstream), so the
piece after a segment's last one is *any* ``(seq', 0)`` with ``seq' > seq``.

The buffer releases one piece at a time (:meth:`JitterBuffer.pop`), when the output is
ready for it:

- **in order**: a session's pieces leave in ``(seq, part)`` order; a piece that arrives
  after a later one of its session was released is dropped (``late``), a piece released
  before is dropped (``duplicates``: redelivery upstream);
- **no waiting forever**: a gap (a later piece is here, the expected one is not) is
  skipped once the later piece has waited ``deadline_s``, and the pieces known to be
  lost are counted (``missing``); after a session's end marker no gap is waited on;
- **no overlap, speech order**: a started segment is finished before another session's
  segment starts (unless it stalls for ``deadline_s``); among the sessions, the next
  segment is the one captured first.  While another session is still open, a segment's
  first piece waits ``hold_s`` after its arrival so that an earlier-spoken piece from
  another speaker that is a little behind can still overtake it.

Times are plain floats of any one clock, passed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Key = tuple[int, int]
PushResult = Literal["accepted", "duplicate", "late"]


@dataclass(frozen=True)
class Piece:
    """What the buffer needs to know about one speech piece; ``item`` is carried along."""

    session: str
    seq: int
    part: int
    last: bool
    capture_start: float
    capture_end: float
    arrived: float
    item: Any = None

    @property
    def key(self) -> Key:
        return (self.seq, self.part)


@dataclass
class JitterStats:
    accepted: int = 0
    released: int = 0
    duplicates: int = 0
    late: int = 0
    missing: int = 0
    gaps_skipped: int = 0


@dataclass
class _Session:
    cursor: Key | None = None  # the last released key
    cursor_last: bool = True  # was it the final piece of its segment?
    pending: dict[Key, Piece] = field(default_factory=dict)
    released: set[Key] = field(default_factory=set)
    ended: bool = False
    waiting_since: float | None = None  # when the output first waited on its next piece

    def head(self) -> Piece | None:
        return self.pending[min(self.pending)] if self.pending else None

    def contiguous(self, key: Key) -> bool:
        if self.cursor is None:
            return False
        seq, part = self.cursor
        if self.cursor_last:
            return key[0] > seq and key[1] == 0
        return key == (seq, part + 1)

    def missing_before(self, key: Key) -> int:
        """How many pieces are known to be lost between the cursor and ``key``."""
        if self.cursor is None:
            return 0
        seq, part = self.cursor
        if key[0] == seq:
            return key[1] - part - 1
        return (0 if self.cursor_last else 1) + key[1]


class JitterBuffer:
    def __init__(self, hold_s: float = 0.15, deadline_s: float = 1.0) -> None:
        if hold_s < 0 or deadline_s <= 0 or hold_s > deadline_s:
            raise ValueError(
                f"need 0 <= hold_s <= deadline_s and deadline_s > 0 (got hold_s={hold_s}, "
                f"deadline_s={deadline_s})"
            )
        self.hold_s = hold_s
        self.deadline_s = deadline_s
        self.stats = JitterStats()
        self._sessions: dict[str, _Session] = {}
        self._current: str | None = None  # session whose segment is being played

    # -- input -------------------------------------------------------------------
    def push(self, piece: Piece) -> PushResult:
        state = self._sessions.setdefault(piece.session, _Session())
        key = piece.key
        if key in state.released or key in state.pending:
            self.stats.duplicates += 1
            return "duplicate"
        if state.cursor is not None and key <= state.cursor:
            self.stats.late += 1
            return "late"
        state.pending[key] = piece
        self.stats.accepted += 1
        return "accepted"

    def end_session(self, session: str) -> None:
        """The session's end marker: nothing more will come, gaps are no longer waited on."""
        self._sessions.setdefault(session, _Session()).ended = True

    # -- output ------------------------------------------------------------------
    def pop(self, now: float) -> Piece | None:
        """The piece to play next, or None if nothing may be played at ``now``."""
        name = self._current
        current = self._sessions.get(name) if name is not None else None
        if name is not None and current is not None and not current.cursor_last:
            head = current.head()
            if head is not None and current.contiguous(head.key):
                return self._release(name, current, head, now)
            if current.waiting_since is None:
                current.waiting_since = now
            stalled = now >= current.waiting_since + self.deadline_s or current.ended
            if not stalled:
                if head is not None and now >= head.arrived + self.deadline_s:
                    return self._release(name, current, head, now)  # skip the gap
                return None
        ready, holding = self._candidates(now)
        if not ready:
            return None
        session, piece = min(ready, key=_spoken_first)
        if holding and _spoken_first(min(holding, key=_spoken_first)) < _spoken_first(
                (session, piece)):
            return None  # an earlier-spoken segment is about to become ready: let it go first
        return self._release(session, self._sessions[session], piece, now)

    def next_wakeup(self, now: float) -> float | None:
        """The earliest time at which :meth:`pop` may return a piece it cannot return now."""
        times: list[float] = []
        for state in self._sessions.values():
            if state.waiting_since is not None:
                times.append(state.waiting_since + self.deadline_s)
            head = state.head()
            if head is not None:
                times.append(head.arrived + self.deadline_s)
                times.append(head.arrived + self.hold_s)
        future = [t for t in times if t > now]
        return min(future) if future else None

    def pending(self) -> int:
        return sum(len(s.pending) for s in self._sessions.values())

    def idle(self) -> bool:
        """Nothing is waiting to be played."""
        return self.pending() == 0

    def has_ended(self, session: str) -> bool:
        state = self._sessions.get(session)
        return state is not None and state.ended

    def sessions_ended(self) -> bool:
        return bool(self._sessions) and all(s.ended for s in self._sessions.values())

    # -- internals -----------------------------------------------------------------
    def _candidates(self, now: float) -> tuple[list[tuple[str, Piece]], list[tuple[str, Piece]]]:
        """Each session's head that may start now, and those still held (by ``hold_s``)."""
        ready: list[tuple[str, Piece]] = []
        holding: list[tuple[str, Piece]] = []
        for session, state in self._sessions.items():
            head = state.head()
            if head is None:
                continue
            entry = (session, head)
            waited = now - head.arrived
            if state.contiguous(head.key) or state.cursor is None:
                others_open = any(
                    not other.ended for s, other in self._sessions.items() if s != session
                )
                if state.cursor is not None and not others_open:
                    ready.append(entry)
                elif waited >= self.hold_s or (state.ended and state.cursor is not None):
                    ready.append(entry)
                else:
                    holding.append(entry)
            elif waited >= self.deadline_s or state.ended:
                ready.append(entry)  # skip the gap in front of it
        return ready, holding

    def _release(self, session: str, state: _Session, piece: Piece, now: float) -> Piece:
        lost = state.missing_before(piece.key) if not state.contiguous(piece.key) else 0
        if lost > 0 or (state.cursor is not None and not state.contiguous(piece.key)):
            self.stats.gaps_skipped += 1
            self.stats.missing += max(lost, 0)
        del state.pending[piece.key]
        state.released.add(piece.key)
        state.cursor = piece.key
        state.cursor_last = piece.last
        state.waiting_since = None
        self._current = None if piece.last else session
        self.stats.released += 1
        return piece


def _spoken_first(entry: tuple[str, Piece]) -> tuple[float, str]:
    return (entry[1].capture_start, entry[0])
