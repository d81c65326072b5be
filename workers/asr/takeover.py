"""Where a session's recognition stands, read back from the streams after a takeover.

A new owner reads this stage's last committed transcripts (which utterance, up to which
sample, its text and words) and re-reads from the audio stream the current utterance's chunks
that the previous owner had already acknowledged; the recognizer resumes from the committed
point, so no committed word is dropped or repeated. Everything is read through the context
(``ctx.read_reverse``), not Redis itself.
"""

from __future__ import annotations

from bus.events import AudioChunk, Transcript
from bus.stage import PartitionContext

from .decoder import DecodedWord
from .streaming import PcmBlock, RecognizerState

REBUILD_SCAN = 400  # entries scanned back for the last commit / the utterance's audio


def engine_chunk(ev: AudioChunk) -> PcmBlock:
    """The recognizer's chunk of a bus audio chunk."""
    return PcmBlock.from_pcm(
        ev.pcm, utterance=ev.utterance, offset=ev.offset, capture_start=ev.capture_start,
        capture_end=ev.capture_end, utt_start=ev.utt_start, utt_end=ev.utt_end, seq=ev.seq,
    )


async def last_commit(ctx: PartitionContext) -> tuple[RecognizerState | None, int, list[str]]:
    """Where the previous owner got to, from the transcript stream: the recognizer's state,
    the seq of the next committed transcript and the last committed texts."""
    committed = [ev for _id, ev in await ctx.read_reverse(ctx.stream("transcript"),
                                                          count=REBUILD_SCAN)
                 if isinstance(ev, Transcript) and ev.kind == "committed"]
    if not committed:
        return None, 0, []
    last = committed[0]  # newest first
    history = [ev.text for ev in reversed(committed[:20])]
    open_utterance: list[Transcript] = []
    if not last.final:
        for ev in committed:
            if ev.utterance != last.utterance:
                break
            open_utterance.append(ev)
        open_utterance.reverse()
    earlier = [ev.text for ev in reversed(committed[len(open_utterance):][:20])]
    state = RecognizerState(
        utterance=last.utterance,
        committed_until=last.sample_end,
        prompt=" ".join(earlier),
        language=(last.source_lang or last.lang) if last.lang != "auto" else None,
        utterance_closed=last.final,
        words=tuple(DecodedWord(" " + w.word, w.start, w.end, w.prob)
                    for ev in open_utterance for w in ev.words),
    )
    return state, last.seq + 1, history


async def acked_chunks(ctx: PartitionContext, handled: str,
                       state: RecognizerState | None) -> tuple[list[PcmBlock], int]:
    """The current utterance's chunks the previous owner had already acknowledged (up to the
    input entry ``handled``), oldest first, and the seq of the last audio chunk seen."""
    chunks: list[PcmBlock] = []
    last_seq = -1
    for _id, ev in await ctx.read_reverse(ctx.input_key, handled, count=REBUILD_SCAN):
        if not isinstance(ev, AudioChunk):
            continue
        last_seq = max(last_seq, ev.seq)
        if state is None or state.utterance_closed:
            if state is not None and ev.utterance <= (state.utterance or -1):
                break
        elif ev.utterance != state.utterance:
            break
        if ev.utterance < 0:
            continue
        chunks.append(engine_chunk(ev))
        if ev.utt_start:
            break
    chunks.reverse()
    return chunks, last_seq
