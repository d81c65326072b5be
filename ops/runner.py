"""Running async entry points from the command line: logging, settings, clean exits."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from bus.connection import RedisUnavailable
from bus.ids import InvalidId
from bus.logs import configure_logging
from bus.settings import BusSettings, settings_from_args


def run_async(
    args: argparse.Namespace, main: Callable[[BusSettings], Coroutine[Any, Any, int | None]]
) -> int:
    """Validate settings, configure logs, run ``main``; one-line errors for the expected failures."""
    settings = settings_from_args(args)
    configure_logging(settings.log_format, settings.log_level)
    try:
        return int(asyncio.run(main(settings)) or 0)
    except RedisUnavailable as exc:
        print(f"s2st: {exc}", file=sys.stderr)
        return 3
    except InvalidId as exc:
        print(f"s2st: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
