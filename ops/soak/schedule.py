"""The soak's fault schedule: ``--faults`` parsed into timed faults.

``--faults`` is ``none``, ``cycle`` (the default: one fault every ``--fault-every``, cycling
through the kinds and, for ``kill`` and ``stop``, through the stages) or a comma-separated
list of ``KIND[@STAGE]:TIME``, e.g. ``kill:60s,stop@tts:90s,redis:2m,link:150``:

- ``kill``: SIGKILL a worker of the stage (one that owns a stream, if any does), then start a
  replacement, as an operator's supervisor would;
- ``stop``: SIGSTOP a worker for longer than the lease TTL, then SIGCONT it (a paused owner:
  the lease fencing must keep it from writing once another worker took its streams);
- ``redis``: restart Redis (SIGTERM, which writes the AOF; then the same server again, which
  loads it);
- ``link``: cut a capture agent's connection to Redis for a few seconds (the proxy between
  them drops it and refuses new ones).

A ``kill`` or ``stop`` without a stage takes the stages in turn (asr, mt, tts). Times are
seconds after the speakers started (``90``, ``90s``, ``1m30s``, ``2m``, ``1h``) and must fall
inside the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("kill", "stop", "redis", "link")
STAGES = ("asr", "mt", "tts")
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    at_s: float
    stage: str | None = None  # kill and stop only

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.stage}" if self.stage else self.kind


def parse_duration(text: str | float, name: str = "duration") -> float:
    """``90``, ``90s``, ``1m30s``, ``2m``, ``1.5h`` -> seconds (ValueError otherwise)."""
    if isinstance(text, int | float):
        return float(text)
    raw = text.strip().lower()
    match = _DURATION.fullmatch(raw)
    if not raw or match is None or not any(match.groups()):
        raise ValueError(f"{name}: {text!r} is not a duration (90, 90s, 1m30s, 2m, 1h)")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s


def parse_faults(text: str, duration_s: float, every_s: float = 180.0) -> list[FaultSpec]:
    """The faults of ``--faults`` in time order (ValueError with a one-line reason)."""
    text = text.strip()
    if text in ("", "none"):
        return []
    if text == "cycle":
        return cycle(duration_s, every_s)
    faults: list[FaultSpec] = []
    turn = {"kill": 0, "stop": 0}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        head, sep, when = item.partition(":")
        if not sep:
            raise ValueError(f"--faults: {item!r} has no time (e.g. kill:60s)")
        kind, _, stage = head.partition("@")
        if kind not in KINDS:
            raise ValueError(f"--faults: unknown fault {kind!r} (one of {', '.join(KINDS)})")
        if stage and kind not in turn:
            raise ValueError(f"--faults: {kind} takes no stage ({item!r})")
        if stage and stage not in STAGES:
            raise ValueError(f"--faults: unknown stage {stage!r} (one of {', '.join(STAGES)})")
        at = parse_duration(when, f"--faults {item!r}")
        if not 0 < at < duration_s:
            raise ValueError(f"--faults: {item!r} is not inside the run (0 < time < "
                             f"{duration_s:g} s)")
        if kind in turn and not stage:
            stage = STAGES[turn[kind] % len(STAGES)]
            turn[kind] += 1
        faults.append(FaultSpec(kind, at, stage or None))
    return sorted(faults, key=lambda f: f.at_s)


def cycle(duration_s: float, every_s: float) -> list[FaultSpec]:
    """One fault every ``every_s`` from ``every_s`` on, up to 60 s before the end: kill, stop,
    redis, link, kill, ..., the stages of kill and stop in turn."""
    if every_s <= 0:
        raise ValueError("--fault-every must be positive")
    faults = []
    n = 0
    turn = {"kill": 0, "stop": 1}  # the first stop is not of the stage the first kill hit
    t = every_s
    while t <= duration_s - 60:
        kind = KINDS[n % len(KINDS)]
        stage = None
        if kind in turn:
            stage = STAGES[turn[kind] % len(STAGES)]
            turn[kind] += 1
        faults.append(FaultSpec(kind, t, stage))
        n += 1
        t += every_s
    return faults
