"""A one-line terminal status: input level meter, VAD state, counters, file progress."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from capture_agent.pipeline import SILENCE_DBFS, CaptureStats

if TYPE_CHECKING:
    from capture_agent.publisher import PublishStats

METER_FLOOR_DBFS = -60.0


def level_bar(dbfs: float, width: int = 20) -> str:
    """A bar from METER_FLOOR_DBFS (empty) to 0 dBFS (full)."""
    fraction = (max(METER_FLOOR_DBFS, min(0.0, dbfs)) - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS
    filled = round(fraction * width)
    return "#" * filled + "-" * (width - filled)


def progress_bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "=" * filled + " " * (width - filled)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def render_publish(p: PublishStats) -> str:
    """The publisher's part of the status line: sent, buffered, lost, Redis state."""
    parts = [f"sent {p.published}"]
    if p.buffered:
        parts.append(f"buffered {p.buffered_s:.1f}s")
    if p.dropped:
        parts.append(f"LOST {p.dropped}")
    if not p.redis_up:
        parts.append("REDIS DOWN")
    return "  ".join(parts)


def render_status(stats: CaptureStats, publish: PublishStats | None = None) -> str:
    """The status line for the current figures (no terminal control characters)."""
    level = "  -inf" if stats.level_dbfs <= SILENCE_DBFS else f"{stats.level_dbfs:6.1f}"
    vad = f"SPEECH u{stats.utterance}" if stats.vad_state == "speech" else "silence"
    parts = [
        f"[{level_bar(stats.level_dbfs)}] {level} dBFS",
        f"vad {vad:<11} p={stats.speech_prob:.2f}",
        f"chunks {stats.chunks_sent}",
        f"utt {stats.utterances}",
        f"dropped {stats.samples_dropped / stats.rate:.1f}s",
        f"overflows {stats.overflows}",
    ]
    progress = stats.progress
    if progress is not None and stats.total_samples:
        total = stats.total_samples / stats.rate
        parts.insert(
            0,
            f"|{progress_bar(progress)}| {progress * 100:3.0f}% "
            f"{_clock(stats.seconds_in)}/{_clock(total)}",
        )
    if publish is not None:
        parts.append(render_publish(publish))
    return "  ".join(parts)


class TerminalMeter:
    """Redraws the status line in place at most `hz` times a second."""

    def __init__(self, stream: TextIO | None = None, hz: float = 10.0, force: bool = False):
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.interval = 1.0 / hz
        self._last = 0.0
        self._width = 0

    def update(
        self, stats: CaptureStats, final: bool = False, publish: PublishStats | None = None
    ) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < self.interval:
            return
        self._last = now
        line = render_status(stats, publish)
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad + ("\n" if final else ""))
        self.stream.flush()
