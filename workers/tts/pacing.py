"""Keeping the translated speech up with a speaker who does not stop.

A listener hears the pieces of a session one after the other. When the translation takes
longer to say than the source took (Spanish is often a fifth longer than English), or a voice
synthesizes slower than real time on a busy CPU, every segment starts a little later than
the one before, and over a long talk the delay grows without bound. A human interpreter
speeds up; so does this worker.

For each (session, language) a :class:`Pacer` estimates when the listener will have heard
everything already written (each piece plays when written or after the previous one ends).
A new segment would start at ``max(now, heard_until)``; its **lag** is that minus the end of
its source words. Up to ``target_lag_s`` the voice speaks at its own pace; beyond, it speeds
up in proportion, reaching ``max_speed`` at ``target_lag_s + horizon_s`` (a proportional
controller: on a source that is steadily too long to say, the lag settles instead of
growing). A segment later than ``late_s`` is spoken by the fast fallback voice
(espeak-ng), which catches up at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaceConfig:
    target_lag_s: float = 2.0  # S2ST_TTS_TARGET_LAG_S
    horizon_s: float = 3.0  # S2ST_TTS_PACE_HORIZON_S
    max_speed: float = 1.4  # S2ST_TTS_MAX_SPEED (1: never faster than the voice's own pace)
    late_s: float = 6.0  # S2ST_TTS_LATE_S (0: never switch to the fallback voice)

    def __post_init__(self) -> None:
        if self.target_lag_s < 0 or self.horizon_s <= 0 or self.late_s < 0:
            raise ValueError("the target lag and late limit must be >= 0, the horizon > 0")
        if not 1.0 <= self.max_speed <= 2.0:
            raise ValueError(f"the maximum speed must be within 1..2, not {self.max_speed}")


@dataclass(frozen=True)
class Pace:
    speed: float  # 1 = the voice's own pace
    late: bool  # speak it with the fast fallback voice
    lag_s: float  # how late the segment would start behind its source words


class Pacer:
    """The listener's clock for one (session, language); see the module docstring."""

    def __init__(self, config: PaceConfig | None = None) -> None:
        self.config = config or PaceConfig()
        self.heard_until = 0.0  # wall clock: the end of the last piece written, as heard

    def plan(self, source_end: float, now: float) -> Pace:
        cfg = self.config
        lag = max(now, self.heard_until) - source_end
        over = max(0.0, lag - cfg.target_lag_s)
        speed = min(cfg.max_speed, 1.0 + (cfg.max_speed - 1.0) * over / cfg.horizon_s)
        return Pace(speed=round(speed, 3), late=cfg.late_s > 0 and lag > cfg.late_s, lag_s=lag)

    def written(self, duration_s: float, at: float) -> None:
        """A piece of ``duration_s`` was written at wall clock ``at``."""
        self.heard_until = max(self.heard_until, at) + duration_s
