"""The caption filter (``s2st redact``): a session's translations in, the same translations
with the room's blocked words masked out.

It reads ``P:{room}:translation:<session>:<lang>`` (group ``redact``, beside the TTS) and
writes ``P:{room}:captions:<session>:<lang>``: each translation (partial or committed) with
every blocked word or phrase of its ``text`` and ``source_text`` replaced by the mask
(``****``). A word is blocked for every room (``S2ST_REDACT_WORDS`` / ``--words``,
comma-separated) or for one room: the Redis set ``P:{room}:redact:words``, written by an
operator (``redis-cli SADD 's2st:{conf1}:redact:words' darn``), read at most every
``refresh_s`` seconds per room. Matching ignores case, takes whole words only (``darn`` is
not masked in ``darning``) and leaves everything else as it was, accents included.

The example of docs/writing-a-stage.md ("A stage end to end"); its stream family is declared
in ``pipeline.REDACT_PIPELINE``.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterable
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.command import add_settings_flags, settings_from_args
from bus.events import Event, Translation
from bus.keys import Keys
from bus.settings import BusSettings, add_bus_options
from bus.stage import Delivery, Emit, PartitionContext, Stage
from bus.text import as_text

# what derive() sets from the source event itself (room, session, capture times, trace)
_CARRIED = {"room", "session", "capture_start", "capture_end", "emitted", "trace"}


class RedactSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="S2ST_REDACT_", extra="ignore")

    words: str = Field("", description="words or phrases masked in every room, comma-separated "
                       "(each room adds its own: the set P:{room}:redact:words)")
    mask: str = Field("****", min_length=1, description="what a blocked word is replaced with")
    refresh_s: float = Field(2.0, gt=0, description="how often a room's word set is re-read "
                             "from Redis, in seconds")


def words_key(keys: Keys, room: str) -> str:
    """The room's blocked words: a set owned by this stage (``P:{room}:redact:*``, which the
    ``worker-redact`` ACL user may read)."""
    return f"{keys.room(room)}:redact:words"


def parse_words(items: Iterable[str]) -> list[str]:
    """Words and phrases from comma-separated text, spaces collapsed, empty ones dropped."""
    out = [" ".join(w.split()) for item in items for w in item.split(",")]
    return [w for w in out if w]


def blocked_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    """One regular expression matching any of ``words`` as whole words, whatever its case
    (longest first, so a phrase wins over a word it starts with); None for no words."""
    unique = sorted(set(parse_words(words)), key=lambda w: (-len(w), w))
    if not unique:
        return None
    alternatives = (r"\s+".join(re.escape(part) for part in w.split()) for w in unique)
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


class RedactStage(Stage):
    name = "redact"
    input_family = "translation"
    per_lang = True  # one input stream per session and language
    accepts = (Translation,)
    wrong_input = "the redact stage reads translations, not {type!r} events"

    def __init__(self, settings: RedactSettings | None = None) -> None:
        self.settings = settings or RedactSettings()
        self.words = parse_words([self.settings.words])
        self._rooms: dict[str, tuple[float, re.Pattern[str] | None]] = {}  # room -> (until, re)

    def end_outputs(self, ctx: PartitionContext) -> list[str]:
        return [ctx.stream("captions", ctx.partition.lang)]

    async def on_event(self, ctx: PartitionContext, event: Event,
                       delivery: Delivery) -> list[Emit]:
        assert isinstance(event, Translation)
        pattern = await self._pattern(ctx)

        def mask(text: str) -> str:
            return pattern.sub(self.settings.mask, text) if pattern is not None else text

        fields = event.model_dump(exclude=_CARRIED)  # the translation's own fields...
        fields.update(text=mask(event.text), source_text=mask(event.source_text))  # masked
        caption = ctx.derive(Translation, event, t_in=delivery.t_in, **fields)
        # committed translations have one seq each: deduplicated (a retry writes nothing
        # twice); partials repeat their seq: written as they come, as the MT stage does
        return [Emit(ctx.stream("captions", ctx.partition.lang), caption,
                     dedup=event.kind == "committed")]

    async def _pattern(self, ctx: PartitionContext) -> re.Pattern[str] | None:
        """The room's pattern, its word set re-read at most every ``refresh_s``."""
        room, now = ctx.partition.room, time.monotonic()
        cached = self._rooms.get(room)
        if cached is None or now >= cached[0]:
            members = await ctx.redis.smembers(words_key(ctx.keys, room))
            words = self.words + parse_words(as_text(m) for m in members)
            cached = self._rooms[room] = (now + self.settings.refresh_s, blocked_pattern(words))
        return cached[1]


# -- the command ------------------------------------------------------------------------------


def register(commands: Any, bench: Any) -> None:
    worker = commands.add_parser(
        "redact",
        help="run the caption filter: translations -> captions with blocked words masked",
        description=(
            "Run the redact stage: reads each session's translation streams and writes them to "
            "captions streams (P:{room}:captions:<session>:<lang>) with the blocked words of "
            "the room (the set P:{room}:redact:words) and of --words masked. Any number of "
            "workers share the sessions. Stops cleanly on SIGTERM/SIGINT."
        ),
    )
    add_settings_flags(worker, RedactSettings,
                       title="caption filter (each flag overrides its S2ST_REDACT_* variable)")
    add_bus_options(worker)
    worker.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    from bus.command import run_async
    from bus.runtime import Worker
    from pipeline import REDACT_PIPELINE

    stage = RedactStage(settings_from_args(RedactSettings, args, program="s2st redact"))

    async def main(settings: BusSettings) -> int:
        await Worker(stage, settings, topology=REDACT_PIPELINE).run(handle_signals=True)
        return 0

    return run_async(args, main)
