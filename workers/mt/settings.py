"""Settings of the MT worker (``s2st mt``): the ``S2ST_MT_*`` variables, each with a flag
made from it (bus/command.py). Their values are read and checked by
:meth:`workers.mt.config.MTSettings.from_env`, whose errors name the variable; here they are
text, unset (None) meaning that reader's default."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _text(description: str) -> Any:
    return Field(None, description=description)


class MTWorkerSettings(BaseSettings):
    """Which backend translates which pair, and how text is held and captioned."""

    model_config = SettingsConfigDict(env_prefix="S2ST_MT_", extra="ignore")

    backends: str | None = _text("pair rules, e.g. 'en-es=opus|apertium,*=apertium' "
                                 "(default *=apertium)")
    pivots: str | None = _text("pivot languages tried in order (default en,es)")
    models: str | None = _text("JSON object naming model backends")
    hold_timeout_s: str | None = _text("longest wait of mid-sentence text (default 1.5)")
    idle_hold_s: str | None = _text("its wait when the listener has nothing left to hear "
                                    "(default 0.5)")
    min_clause_words: str | None = _text("words before a comma counts as a boundary "
                                         "(default 5)")
    context: str | None = _text("previous sentences given to backends (default 3)")
    captions: str | None = _text("live captions: auto (fast routes only), on, off")
    caption_interval_s: str | None = _text("least time between two captions (default 0.5)")
    apertium_timeout_s: str | None = _text("longest Apertium call (default 10)")
    model_fallback: str | None = _text(
        "a model a rule names that cannot load: off (default) stops the worker at start, on "
        "translates its pairs with the next backend of their rule")


def mt_settings(args: argparse.Namespace | None = None,
                env: Mapping[str, str] | None = None) -> Any:
    """The worker's :class:`~workers.mt.config.MTSettings`: flags over ``S2ST_MT_*``
    variables over defaults; ValueError names a bad setting."""
    from bus.command import env_from_args

    from .config import MTSettings

    return MTSettings.from_env(env_from_args(MTWorkerSettings, args, env))
