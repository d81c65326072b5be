"""Settings of the MT worker (``s2st mt``): the ``S2ST_MT_*`` variables, each with a flag
made from it (bus/command.py). Their values are read and checked by
:meth:`workers.mt.config.MTSettings.from_env`, whose errors name the variable; here they are
text, unset (None) meaning that reader's default."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.command import unset_text


class MTWorkerSettings(BaseSettings):
    """Which backend translates which pair, and how text is held and captioned."""

    model_config = SettingsConfigDict(env_prefix="S2ST_MT_", extra="ignore")

    backends: str | None = unset_text("pair rules, e.g. 'en-es=opus|apertium,*=apertium' "
                                       "(default *=apertium)")
    pivots: str | None = unset_text("pivot languages tried in order (default en,es)")
    models: str | None = unset_text("JSON object naming model backends")
    hold_timeout_s: str | None = unset_text("longest wait of mid-sentence text (default 1.5)")
    idle_hold_s: str | None = unset_text("its wait when the listener has nothing left to hear "
                                          "(default 0.5)")
    min_clause_words: str | None = unset_text("words before a comma counts as a boundary "
                                               "(default 5)")
    context: str | None = unset_text("previous sentences given to backends (default 3)")
    captions: str | None = unset_text("live captions: auto (fast routes only), on, off")
    caption_interval_s: str | None = unset_text("least time between two captions (default 0.5)")
    apertium_timeout_s: str | None = unset_text("longest Apertium call (default 10)")
    model_fallback: str | None = unset_text(
        "a model a rule names that cannot load: off (default) stops the worker at start, on "
        "translates its pairs with the next backend of their rule")


def mt_settings(args: argparse.Namespace | None = None,
                env: Mapping[str, str] | None = None) -> Any:
    """The worker's :class:`~workers.mt.config.MTSettings`: flags over ``S2ST_MT_*``
    variables over defaults; ValueError names a bad setting."""
    from bus.command import env_from_args

    from .config import MTSettings

    return MTSettings.from_env(env_from_args(MTWorkerSettings, args, env))
