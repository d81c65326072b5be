"""Where a session's translation stands, read back from the streams after a takeover.

A translation's ``seq`` says where its span ended in the source: ``2 × src_seq + 1`` when it
ended with the end of transcript piece ``src_seq``, ``2 × src_seq`` when it ended at a
sentence boundary inside that piece (the rest of the piece was held). So the seqs of a
stream increase strictly even when two spans end in the same piece (a sentence end inside a
piece, then the rest of it released by the hold timeout), which the bus's deduplication needs.

After a span that ended with its last piece nothing of that piece is held, and from there the
segmenter's state depends only on the pieces pushed after it (a hold timeout after it would
have published another translation ending with a piece). So a new owner finds the last such
*checkpoint* in the most advanced translation stream and re-feeds the committed transcript
pieces after it that the previous owner had handled (acknowledged), without translating: the
segmenter then holds exactly what the previous owner held, and the spans it releases on the
way were published already. Everything is read back through the context
(``ctx.newest_first``, ``ctx.acknowledged_end``), not Redis itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bus.events import Transcript, Translation
from bus.stage import PartitionContext

from .engine import TranslationOut

_BATCH = 200


def translation_seq(out: TranslationOut) -> int:
    """The event seq of a committed translation (see the module docstring)."""
    ends_inside = out.resume_seq == out.src_seq and out.resume_offset > 0
    return 2 * out.src_seq + (0 if ends_inside else 1)


def ends_with_piece(translation: Translation) -> bool:
    """True if the translation's span ended with the end of its last source piece."""
    return translation.seq % 2 == 1


@dataclass
class Checkpoint:
    """Where to rebuild the segmenter from: re-feed committed pieces from ``resume_seq`` on."""

    resume_seq: int = 0
    context: list[str] = field(default_factory=list)  # source texts before it, oldest first
    last_seq: int = -1  # seq of the most advanced translation found (-1: none)


async def _committed(ctx: PartitionContext, key: str) -> AsyncIterator[Translation]:
    async for _entry_id, event in ctx.newest_first(key, batch=_BATCH):
        if isinstance(event, Translation) and event.kind == "committed":
            yield event


async def find_checkpoint(ctx: PartitionContext, langs: list[str], context_size: int) -> Checkpoint:
    """The checkpoint of the most advanced of the session's translation streams in ``langs``."""
    best_key, best_seq = None, -1
    for lang in langs:
        key = ctx.stream("translation", lang)
        async for newest in _committed(ctx, key):
            if newest.seq > best_seq:
                best_key, best_seq = key, newest.seq
            break
    if best_key is None:
        return Checkpoint()
    checkpoint = Checkpoint(last_seq=best_seq)
    found = False
    async for translation in _committed(ctx, best_key):
        if not found and ends_with_piece(translation):
            found = True
            checkpoint.resume_seq = translation.src_seq + 1
        if found:
            if len(checkpoint.context) >= context_size:
                break
            checkpoint.context.insert(0, translation.source_text)
    return checkpoint


async def handled_pieces(ctx: PartitionContext, resume_seq: int) -> list[Transcript]:
    """The committed transcript pieces with seq >= ``resume_seq`` that this stage's group has
    handled already (acknowledged: before the first pending entry), oldest first."""
    end = await ctx.acknowledged_end()
    if end is None:
        return []
    pieces: list[Transcript] = []
    async for _entry_id, event in ctx.newest_first(ctx.input_key, end, batch=_BATCH):
        if isinstance(event, Transcript) and event.kind == "committed":
            if event.seq < resume_seq:
                break
            pieces.append(event)
    pieces.reverse()
    return pieces
