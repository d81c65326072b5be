"""Keeping the translated speech up with a speaker who does not stop.

A listener hears the pieces of a session one after the other. When the translation takes
longer to say than the source took (Spanish is often a fifth longer than English), or a voice
synthesizes slower than real time on a busy CPU, every segment starts a little later than
the one before, and over a long talk the delay grows without bound. A human interpreter
speeds up; so does this worker.

For each (session, language) a :class:`Pacer` decides the pace of each segment from two
figures, taking the faster:

- **fit** (feed-forward): how long the segment would take to say at the voice's own pace
  (its characters times the seconds per character this voice has taken so far, at pace 1)
  against how long its source words took to say; a segment that would outlast its source is
  spoken that much faster, so the listener does not fall behind in the first place;
- **lag** (feedback): when the listener will have heard everything already written (each
  piece plays when written or after the previous one ends), a new segment starts at
  ``max(now, heard_until)``; its lag is that minus the end of its source words. Up to
  ``target_lag_s`` nothing; beyond, faster in proportion, reaching ``max_speed`` at
  ``target_lag_s + horizon_s``.

Never slower than the voice's own pace, never faster than ``max_speed``. A segment later than
``late_s`` is spoken by the fast fallback voice (espeak-ng), which catches up at once.

Piece by piece, a voice must also be in time: :class:`SynthesisCost` learns what each voice
costs here from the pieces it actually spoke (so the load of the ASR beside it is in the
figure), and a piece that a voice would finish after its due time (``ready_lag_s`` after
its source words, or when the audio before it has played, whichever is later) is spoken by
the next voice of the chain; the piece after tries the first voice again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaceConfig:
    target_lag_s: float = 1.5  # S2ST_TTS_TARGET_LAG_S
    horizon_s: float = 2.0  # S2ST_TTS_PACE_HORIZON_S
    max_speed: float = 1.5  # S2ST_TTS_MAX_SPEED (1: never faster than the voice's own pace)
    late_s: float = 6.0  # S2ST_TTS_LATE_S (0: never switch to the fallback voice)
    # S2ST_TTS_READY_LAG_S: a segment's first piece is due this long after its source words
    # end (or when the audio before it has played); a voice that would miss it passes the
    # piece on (0: no such check)
    ready_lag_s: float = 2.0
    gap_s: float = 0.3  # S2ST_TTS_GAP_S: silence tolerated before a later piece is due

    def __post_init__(self) -> None:
        if min(self.target_lag_s, self.late_s, self.ready_lag_s, self.gap_s) < 0 \
                or self.horizon_s <= 0:
            raise ValueError("the lags, late limit and gap must be >= 0, the horizon > 0")
        if not 1.0 <= self.max_speed <= 2.0:
            raise ValueError(f"the maximum speed must be within 1..2, not {self.max_speed}")


_RATE_WEIGHT = 0.3  # of the newest piece in the running seconds-per-character estimate


@dataclass(frozen=True)
class Pace:
    speed: float  # 1 = the voice's own pace
    late: bool  # speak it with the fast fallback voice
    lag_s: float  # how late the segment would start behind its source words
    fit: float | None = None  # the pace that makes it last as long as its source (None: unknown)


class Pacer:
    """The listener's clock for one (session, language); see the module docstring."""

    def __init__(self, config: PaceConfig | None = None) -> None:
        self.config = config or PaceConfig()
        self.heard_until = 0.0  # wall clock: the end of the last piece written, as heard
        self.seconds_per_char: float | None = None  # of this voice at pace 1

    def plan(self, source_end: float, now: float, *, source_start: float | None = None,
             chars: int = 0) -> Pace:
        cfg = self.config
        lag = max(now, self.heard_until) - source_end
        over = max(0.0, lag - cfg.target_lag_s)
        speed = 1.0 + (cfg.max_speed - 1.0) * over / cfg.horizon_s
        fit = None
        if self.seconds_per_char and chars and source_start is not None \
                and source_end - source_start > 0.2:
            fit = chars * self.seconds_per_char / (source_end - source_start)
            speed = max(speed, fit)
        speed = min(cfg.max_speed, max(1.0, speed))
        return Pace(speed=round(speed, 3), late=cfg.late_s > 0 and lag > cfg.late_s,
                    lag_s=lag, fit=fit)

    def written(self, duration_s: float, at: float, *, chars: int = 0,
                speed: float = 1.0) -> None:
        """A piece of ``duration_s`` saying ``chars`` characters at pace ``speed`` was written
        at wall clock ``at``."""
        self.heard_until = max(self.heard_until, at) + duration_s
        if chars > 0 and duration_s > 0:
            sample = duration_s * speed / chars
            old = self.seconds_per_char
            self.seconds_per_char = sample if old is None else \
                old + _RATE_WEIGHT * (sample - old)


# What one piece costs a voice beyond its characters (a call's fixed work), in characters:
# Kokoro here took 0.39 s for "Hola." and 4.0 s for 116 characters.
_OVERHEAD_CHARS = 10
_COST_WEIGHT = 0.5  # of the newest piece in a voice's running cost
# A busy host's pace varies from piece to piece: a piece is expected to take this much more
# than the running cost says (on the dev clips, next to CI jobs, pieces took up to twice it)
_MARGIN = 1.3
_COST_RELAX = 0.95  # a voice passed over: its figure times this, down to half its last measure


class SynthesisCost:
    """What each (language, voice) costs here, learned from the pieces it spoke.

    The unit is synthesis seconds per character at the voice's own pace (speaking faster
    makes less audio and costs less), plus a call's overhead; a running average, so a busier
    host shows within a piece or two. A voice that is passed over because it would be late
    is not measured, so each time it is passed over its figure shrinks by 5 %, down to half
    of what it last measured: after a burst of load it gets pieces again, and a host that
    stays slow measures it slow again (a piece late by at most about its own synthesis time
    now and then, not a voice lost for the run).
    """

    def __init__(self) -> None:
        self._per_char: dict[tuple[str, str], float] = {}
        self._rtf: dict[tuple[str, str], float] = {}
        self._measured: dict[tuple[str, str], tuple[float, float]] = {}  # (per_char, rtf)

    def observe(self, lang: str, voice: str, *, chars: int, speed: float, synth_s: float,
                audio_s: float) -> None:
        key = (lang, voice)
        sample = synth_s * speed / (chars + _OVERHEAD_CHARS)
        old = self._per_char.get(key)
        new = sample if old is None else old + _COST_WEIGHT * (sample - old)
        self._per_char[key] = new
        if audio_s > 0:
            rtf, old_rtf = synth_s / audio_s, self._rtf.get(key)
            self._rtf[key] = rtf if old_rtf is None else old_rtf + _COST_WEIGHT * (rtf - old_rtf)
        self._measured[key] = (new, self._rtf.get(key, 0.0))

    def predict(self, lang: str, voice: str, *, chars: int, speed: float = 1.0) -> float | None:
        """Seconds ``voice`` may take for ``chars`` characters at pace ``speed`` (with a
        margin); None when it has not spoken yet."""
        per_char = self._per_char.get((lang, voice))
        return None if per_char is None else \
            _MARGIN * per_char * (chars + _OVERHEAD_CHARS) / speed

    def rtf(self, lang: str, voice: str) -> float | None:
        """The running real-time factor of ``voice`` (synthesis time / audio time)."""
        return self._rtf.get((lang, voice))

    def passed_over(self, lang: str, voice: str) -> None:
        key = (lang, voice)
        if key not in self._measured:
            return
        for figures, last in zip((self._per_char, self._rtf), self._measured[key], strict=True):
            if key in figures:
                figures[key] = max(last / 2, figures[key] * _COST_RELAX)
