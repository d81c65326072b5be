"""Which streams a worker should take, keep and give up: pure decisions, no Redis.

A discovery round (bus/runtime/worker.py) reads the registry and a few flags, then asks:

* :func:`wanted` -- the streams the registered sessions have for this stage (less those known
  to be finished);
* :func:`removed_sessions` -- the sessions of held streams that are no longer registered;
* :func:`split_held` -- which wanted streams are held already (the others need a look at
  whether they finished elsewhere);
* :func:`plan` -- given the streams still wanted, what is held (oldest acquisition first)
  and how many workers are alive: the fair share, the held streams to shed (the most recently
  acquired first) and the candidates to acquire (in random order), up to ``capacity`` of them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bus.keys import Partition
from bus.registry import SessionInfo, partitions_for

Snapshot = Mapping[str, tuple[list[str], list[SessionInfo]]]  # room -> targets, sessions
Wanted = list[tuple[Partition, SessionInfo]]


@dataclass(frozen=True)
class Held:
    """What the planner knows of one held stream."""

    part: Partition
    closing: bool = False  # being given up already


@dataclass
class Plan:
    share: int  # streams this worker should hold
    shed: list[Partition] = field(default_factory=list)  # give these up (newest first)
    candidates: Wanted = field(default_factory=list)  # try these, in this order ...
    capacity: int = 0  # ... until this many were acquired


def wanted(snapshot: Snapshot, finished: set[Partition] | frozenset[Partition],
           per_lang: bool) -> Wanted:
    """The streams of every registered session (per target language for a per-language
    stage), less those known to be finished."""
    out: Wanted = []
    for _room, (targets, infos) in snapshot.items():
        for info in infos:
            for part in partitions_for(info, targets, per_lang):
                if part not in finished:
                    out.append((part, info))
    return out


def removed_sessions(held: Iterable[Partition], snapshot: Snapshot) -> set[tuple[str, str]]:
    """The (room, session) of held streams whose session is no longer registered (a capture
    agent that failed before its first chunk removed it again, or the room was deleted)."""
    registered = {(room, info.session) for room, (_t, infos) in snapshot.items()
                  for info in infos}
    return {(p.room, p.session) for p in held if (p.room, p.session) not in registered}


def split_held(wanted: Wanted, held: Iterable[Partition] | Mapping[Partition, object],
               ) -> tuple[Wanted, Wanted]:
    """``wanted`` as (held already, not held), each in its order."""
    ours = [(p, i) for p, i in wanted if p in held]
    others = [(p, i) for p, i in wanted if p not in held]
    return ours, others


def fair_share(streams: int, live_workers: int) -> int:
    """The streams each of ``live_workers`` (at least one) should hold of ``streams``."""
    return math.ceil(streams / max(1, live_workers)) if streams else 0


def plan(wanted: Wanted, held: Sequence[Held], live_workers: int,
         shuffle: Callable[[Wanted], None] = random.shuffle) -> Plan:
    """What to shed and what to acquire. ``wanted``: every stream still to be handled, held
    or not; ``held``: what this worker holds, in the order it acquired it (those being given
    up already count for nothing, and are no candidates either)."""
    share = fair_share(len(wanted), live_workers)
    mine = [h.part for h in held if not h.closing]
    excess = len(mine) - share
    shed = list(reversed(mine))[:max(0, excess)]
    holding = {h.part for h in held}
    candidates = [(p, i) for p, i in wanted if p not in holding]
    shuffle(candidates)
    return Plan(share=share, shed=shed, candidates=candidates,
                capacity=share - (len(mine) - len(shed)))
