"""Loaded (as ``sitecustomize``) by the processes the clock tests run under libfaketime.

libfaketime 0.9.10 with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` mistranslates
``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)``, which Python 3.11's ``time.sleep`` calls:
every ``time.sleep`` fails with EINVAL (wolfcw/libfaketime#426). Such a process sleeps with
``select`` instead (a relative timeout, on the real clock), and nothing else changes.
"""

from __future__ import annotations

import os
import select
import time

if "faketime" in os.environ.get("LD_PRELOAD", ""):
    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
