"""Latency of a speech-to-speech session, computation-aware, as SimulEval defines it.

Every time here is in seconds on the **source timeline**: 0 is the capture time of the
clip's first sample, and because the clip is spoken into the system at real-time pace,
source second ``x`` is captured at wall clock ``t0 + x``. A wall-clock time ``t`` of anything
downstream is therefore ``t - t0`` on the same axis, and every delay below includes all the
computation and queueing of the real system (SimulEval's computation-aware, ``_CA``, variant).

For output speech piece ``i`` (in the order the player played them):

- ``d_i``: when it was available at the player (read from the bus), the emission delay;
- ``dur_i``: its duration;
- playback as SimulEval lays it out: ``s_1 = d_1``, ``s_i = max(e_{i-1}, d_i)``,
  ``e_i = s_i + dur_i`` (speech is never overlapped; gaps are silence).

Then, per clip of source length ``|X|``:

- **StartOffset** ``= d_1``;
- **EndOffset** ``= e_last - |X|``;
- **AL** ``= 1/tau * sum_{k<=tau} (D_k - (k-1) * |X| / |Y|)`` over the output *words*, with
  ``D_k`` the time word ``k`` starts to be heard (its piece's ``s_i`` plus its share of the
  piece by character position: a piece is one clause, spoken at an even rate), ``|Y|`` the
  reference translation's length in words (the output's when there is none) and ``tau`` the
  first word with ``D_k >= |X|`` (all words when none is);
- **LAAL**: AL with ``|Y|`` replaced by ``max(|Y|, |Y_hat|)`` (no reward for over-generation).

And the listener's view, measured rather than laid out: for every translated segment, its
**segment latency** is the time from the end of the source words it translates
(``capture_end``) to the moment the player started playing its first piece.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from player_agent.latency import percentile


@dataclass(frozen=True)
class OutputPiece:
    """One piece of translated speech, timed on the source timeline (seconds)."""

    emitted: float  # d_i: available at the player
    duration: float
    text: str
    source_end: float  # end of the source words it translates
    started: float | None = None  # when the player really started it (measured)
    first: bool = True  # the first piece of its segment


def playback(pieces: Sequence[OutputPiece]) -> list[tuple[float, float]]:
    """SimulEval's playback intervals ``(s_i, e_i)``: each piece when it is available, or
    right after the previous one ends."""
    intervals: list[tuple[float, float]] = []
    end = -math.inf
    for p in pieces:
        start = max(end, p.emitted)
        end = start + p.duration
        intervals.append((start, end))
    return intervals


def start_offset(pieces: Sequence[OutputPiece]) -> float | None:
    return pieces[0].emitted if pieces else None


def end_offset(pieces: Sequence[OutputPiece], source_s: float) -> float | None:
    if not pieces:
        return None
    return playback(pieces)[-1][1] - source_s


def word_onsets(pieces: Sequence[OutputPiece]) -> list[float]:
    """When each output word starts to be heard (``D_k``), in output order."""
    onsets: list[float] = []
    for p, (start, _end) in zip(pieces, playback(pieces), strict=True):
        words = p.text.split()
        if not words:
            continue
        total = sum(len(w) for w in words) + len(words) - 1
        at = 0
        for w in words:
            onsets.append(start + p.duration * at / max(total, 1))
            at += len(w) + 1
    return onsets


def average_lagging(delays: Sequence[float], source_s: float, reference_words: int | None,
                    *, length_adaptive: bool = False) -> float | None:
    """AL (or LAAL) of one instance; None without output or source."""
    if not delays or source_s <= 0:
        return None
    if delays[0] > source_s:
        return delays[0]
    target = reference_words if reference_words else len(delays)
    if length_adaptive:
        target = max(target, len(delays))
    rate = source_s / target  # |X| / |Y|
    total = 0.0
    tau = 0
    for k, d in enumerate(delays):
        total += d - k * rate
        tau = k + 1
        if d >= source_s:
            break
    return total / tau


def segment_latencies(pieces: Sequence[OutputPiece]) -> list[float]:
    """Source words' end to their first piece starting to play, per segment (measured)."""
    return [p.started - p.source_end for p in pieces if p.first and p.started is not None]


@dataclass(frozen=True)
class Stats:
    count: int
    p50: float | None
    p95: float | None
    max: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "max": self.max}


def stats(values: Sequence[float]) -> Stats:
    if not values:
        return Stats(0, None, None, None)
    return Stats(len(values), percentile(list(values), 50), percentile(list(values), 95),
                 max(values))


@dataclass(frozen=True)
class ClipLatency:
    source_s: float
    start_offset_s: float | None
    end_offset_s: float | None
    al_s: float | None
    laal_s: float | None
    segment_latency_s: list[float]

    def as_dict(self) -> dict[str, object]:
        return {
            "source_s": self.source_s, "start_offset_s": self.start_offset_s,
            "end_offset_s": self.end_offset_s, "al_s": self.al_s, "laal_s": self.laal_s,
            "segment_latency_s": stats(self.segment_latency_s).as_dict(),
        }


def clip_latency(pieces: Sequence[OutputPiece], source_s: float,
                 reference_words: int | None) -> ClipLatency:
    onsets = word_onsets(pieces)
    return ClipLatency(
        source_s=source_s,
        start_offset_s=start_offset(pieces),
        end_offset_s=end_offset(pieces, source_s),
        al_s=average_lagging(onsets, source_s, reference_words),
        laal_s=average_lagging(onsets, source_s, reference_words, length_adaptive=True),
        segment_latency_s=segment_latencies(pieces),
    )
