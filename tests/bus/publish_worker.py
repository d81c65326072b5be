"""A stage that writes part of its output early through ``ctx.publish`` (as TTS does with the
first piece of a long synthesis), for the idempotent-output tests.

Run as a script it is a worker process (settings from the S2ST_* environment) that the tests
kill with SIGKILL while its handler hangs after publishing: ``--hang-seq N``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bus.events import Speech
from bus.runtime import Worker
from bus.settings import BusSettings
from bus.stage import Delivery, Emit, PartitionContext, Stage

LANG = "es"
OUTPUT_FAMILY = "speech"


class EarlyPublisher(Stage):
    """Two Speech pieces per input chunk, both with the chunk's seq: part 0 is written at once
    through ``ctx.publish``, part 1 is returned (written with the input's acknowledgement).

    ``hang_seq``: after publishing part 0 of this seq, hang (the test kills the process).
    ``fail_once``: after publishing part 0 of these seqs, raise on the first attempt.
    """

    name = "synth"
    input_family = "audio"

    def __init__(self, *, hang_seq: int | None = None, fail_once: set[int] | None = None) -> None:
        self.hang_seq = hang_seq
        self.fail_once = set(fail_once or ())
        self.produced: list[tuple[int, int]] = []  # (seq, part) of every piece handed over
        self.attempts: dict[int, list[int]] = {}  # seq -> Delivery.attempts of each call

    async def handle(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        event = delivery.event
        self.attempts.setdefault(event.seq, []).append(delivery.attempts)
        out = ctx.stream(OUTPUT_FAMILY, LANG)
        if not await ctx.publish([Emit(out, self._piece(ctx, delivery, 0))]):
            raise RuntimeError("stream lost while publishing")
        if event.seq == self.hang_seq:
            await asyncio.sleep(3600)
        if event.seq in self.fail_once:
            self.fail_once.discard(event.seq)
            raise RuntimeError(f"synthesis of seq {event.seq} failed after its first piece")
        return [Emit(out, self._piece(ctx, delivery, 1))]

    def _piece(self, ctx: PartitionContext, delivery: Delivery, part: int) -> Speech:
        event = delivery.event
        self.produced.append((event.seq, part))
        return ctx.derive(Speech, event, t_in=delivery.t_in, seq=event.seq, lang=LANG,
                          src_seq=event.seq, part=part, last=part == 1, text=f"piece {part}",
                          rate=16000, samples=160, duration=0.01, pcm=bytes(320))


async def pieces(client: Any, key: str) -> list[tuple[int, int, str]]:
    """(seq, part, worker that wrote it) of every entry of an output stream, in order."""
    from bus.events import decode

    out = []
    for _id, fields in await client.xrange(key):
        event = decode(fields)
        assert isinstance(event, Speech), event
        out.append((event.seq, event.part, event.trace[-1].worker))
    return out


def main() -> None:
    from bus.logs import configure_logging

    parser = argparse.ArgumentParser()
    parser.add_argument("--hang-seq", type=int)
    args = parser.parse_args()
    settings = BusSettings()
    configure_logging(settings.log_format, settings.log_level)
    stage = EarlyPublisher(hang_seq=args.hang_seq)
    asyncio.run(Worker(stage, settings).run(handle_signals=True))


if __name__ == "__main__":
    main()
