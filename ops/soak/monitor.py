"""Memory and CPU of the soak's processes over time (psutil), and whether they grow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

MB = 1024 * 1024


@dataclass
class ProcessSampler:
    """Samples the RSS and CPU share of named processes; keeps every sample."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)

    def sample(self, t_s: float, named: Iterable[tuple[str, int]]) -> None:
        """One sample at ``t_s`` (seconds into the run) of each ``(name, pid)`` alive."""
        alive = set()
        for name, pid in named:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)  # the first call only starts the measure
                    cpu = None
                else:
                    cpu = proc.cpu_percent(None)
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._procs.pop(pid, None)
                continue
            alive.add(pid)
            self.samples.append({"t_s": round(t_s, 1), "name": name, "pid": pid,
                                 "rss_mb": round(rss / MB, 1),
                                 "cpu_pct": None if cpu is None else round(cpu, 1)})
        for pid in [p for p in self._procs if p not in alive]:
            del self._procs[pid]


def growth(samples: list[dict[str, Any]], key: str = "rss_mb",
           skip_fraction: float = 0.25) -> float | None:
    """Least-squares slope of ``key`` in units per hour, over the samples after the first
    ``skip_fraction`` of the time they span (start-up: models loading, caches filling).
    None with fewer than 5 samples."""
    if len(samples) < 5:
        return None
    t_first, t_last = samples[0]["t_s"], samples[-1]["t_s"]
    start = t_first + (t_last - t_first) * skip_fraction
    points = [(s["t_s"], s[key]) for s in samples if s["t_s"] >= start and s[key] is not None]
    if len(points) < 5:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    if var == 0:
        return None
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / var
    return round(slope * 3600, 1)


def summary(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per process name: first, last and largest RSS, and the RSS growth per hour of the
    process of that name that lived longest (a replaced worker starts again)."""
    by_name: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for s in samples:
        by_name.setdefault(s["name"], {}).setdefault(s["pid"], []).append(s)
    out: dict[str, dict[str, Any]] = {}
    for name, by_pid in sorted(by_name.items()):
        every = [s for runs in by_pid.values() for s in runs]
        longest = max(by_pid.values(), key=len)
        cpus = [s["cpu_pct"] for s in every if s["cpu_pct"] is not None]
        out[name] = {
            "processes": len(by_pid), "samples": len(every),
            "rss_mb_first": longest[0]["rss_mb"], "rss_mb_last": longest[-1]["rss_mb"],
            "rss_mb_max": max(s["rss_mb"] for s in every),
            "rss_growth_mb_per_h": growth(longest),
            "cpu_pct_mean": round(sum(cpus) / len(cpus), 1) if cpus else None,
        }
    return out

