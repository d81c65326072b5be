"""The ASR stage on the bus: audio chunks -> partial and committed transcripts.

One :class:`~workers.asr.streaming.StreamingRecognizer` per owned session stream. All model
work runs on one decoding thread; sessions whose decode is due while another batch runs are
decoded together in the next batch (:class:`DecodeScheduler`), so a worker with many sessions
batches them on its own (:mod:`workers.asr.batching`). Committed transcripts get seq 0, 1,
2... per session and are deduplicated by the bus; partial ones carry the seq the next commit
will get. The end marker ends the open utterance and is forwarded to the transcript stream.

Takeover: :meth:`ASRStage.on_acquire` resumes the recognizer from this stage's last committed
transcript and the current utterance's acknowledged audio (:mod:`workers.asr.takeover`), so no
committed word is dropped or repeated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bus.events import AudioChunk, Event, Transcript, Word
from bus.logs import get_logger
from bus.stage import Delivery, Emit, PartitionContext, Reject, Stage

from .batching import BatchScheduler, DecodeScheduler
from .decoder import SAMPLE_RATE, DecoderOptions, WhisperDecoder
from .streaming import RecognizerState, StreamConfig, StreamingRecognizer, Update
from .takeover import acked_chunks, engine_chunk, last_commit

log = get_logger("s2st.asr")


@dataclass
class ASRConfig:
    model: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int | None = None
    task: str = "transcribe"  # "translate": English text from any language; "auto": see below
    language: str | None = None  # override the sessions' source language
    min_decode_s: float = 0.5
    beam_size: int = 1
    max_batch: int = 16


@dataclass
class _Session:
    rec: StreamingRecognizer
    next_seq: int = 0  # seq of the next committed transcript
    last_chunk: int = -1  # seq of the last audio chunk taken (a producer may retry a write)
    committed_text: list[str] = field(default_factory=list)


class ASRStage(Stage):
    name = "asr"
    input_family = "audio"
    accepts = (AudioChunk,)
    wrong_input = "an ASR stage reads audio chunks, not {type!r} events"

    def __init__(self, config: ASRConfig | None = None) -> None:
        self.config = config or ASRConfig()
        self.decoder: WhisperDecoder | None = None
        self.scheduler: DecodeScheduler | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def setup(self) -> None:
        from .models import load_model

        cfg = self.config
        model = await asyncio.to_thread(load_model, cfg.model, cfg.device, cfg.compute_type,
                                        cfg.cpu_threads)
        self.decoder = WhisperDecoder(model, DecoderOptions(beam_size=cfg.beam_size))
        self.scheduler = DecodeScheduler(BatchScheduler(self.decoder, max_batch=cfg.max_batch))
        self.scheduler.start()
        log.info("asr model loaded", model=cfg.model, multilingual=self.decoder.multilingual)

    async def teardown(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()

    def _stream_config(self, ctx: PartitionContext) -> StreamConfig:
        language = self.config.language or ctx.session.source_lang or "auto"
        if self.decoder is not None and not self.decoder.multilingual:
            if language not in ("en", "auto"):
                raise Reject(f"model {self.config.model} is English-only; session language is "
                             f"{language!r} (use a multilingual model such as base)")
            language = "en"
        task = self.config.task
        if task == "auto":
            # Whisper's own translation for a session whose room listens only in English
            # (decided when the session is taken: a listener language added later is
            # translated from that English by the MT stage)
            english_only = ctx.targets == ["en"] and language != "en"
            task = "translate" if english_only else "transcribe"
        return StreamConfig(language=language, task=task,  # type: ignore[arg-type]
                            min_decode_s=self.config.min_decode_s)

    async def on_acquire(self, ctx: PartitionContext) -> None:
        assert self.scheduler is not None
        try:
            config = self._stream_config(ctx)
        except Reject as exc:
            log.error("session cannot be recognized", session=ctx.partition.session,
                      error=str(exc))
            ctx.state = None
            return
        state, next_seq, history = await last_commit(ctx)
        session = _Session(StreamingRecognizer(self.decoder, config, state=state), next_seq,
                           committed_text=history)
        ctx.state = session
        handled = await ctx.handled_until()
        if handled is None:
            return
        chunks, last_seq = await acked_chunks(ctx, handled, state)
        session.last_chunk = last_seq
        if chunks:
            rec, updates = await self.scheduler.call(
                lambda: StreamingRecognizer.resume(self.decoder, state or RecognizerState(
                    None, None), chunks, config))
            session.rec = rec
            emits = self._emits(ctx, session, updates, None, t_in=0.0)
            if emits:
                await ctx.publish(emits)
        log.info("session resumed", session=ctx.partition.session, next_seq=next_seq,
                 replayed_chunks=len(chunks))

    # -- handling ----------------------------------------------------------------------
    def end_outputs(self, ctx: PartitionContext) -> list[str]:
        return [ctx.stream("transcript")]

    async def handle(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        if ctx.state is None and not delivery.is_end:
            raise Reject("this worker cannot recognize the session's language")
        return await super().handle(ctx, delivery)

    async def on_end(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        """End the open utterance (commit what it holds), then forward the marker."""
        session: _Session | None = ctx.state
        if session is None:
            return self.forward_end(ctx, delivery, seq=0)
        assert self.scheduler is not None
        updates = await self.scheduler.call(session.rec.end_utterance)
        emits = self._emits(ctx, session, updates, delivery.event, t_in=delivery.t_in)
        return emits + self.forward_end(ctx, delivery, seq=session.next_seq)

    async def on_event(self, ctx: PartitionContext, event: Event,
                       delivery: Delivery) -> list[Emit]:
        assert isinstance(event, AudioChunk) and self.scheduler is not None
        session: _Session = ctx.state
        if event.rate != SAMPLE_RATE:
            raise Reject(f"audio must be {SAMPLE_RATE} Hz, not {event.rate}")
        if event.seq <= session.last_chunk:
            return []  # the same chunk written twice (a producer retried its write)
        session.last_chunk = event.seq
        if event.utterance < 0:
            return []  # silence between utterances (sent only with --send-all)
        chunk = engine_chunk(event)
        rec = session.rec
        updates = await self.scheduler.call(lambda: rec.feed(chunk, decode=False))
        if not ctx.more_pending and rec.decode_due:
            updates += await self.scheduler.decode(ctx.partition, rec)
        return self._emits(ctx, session, updates, event, t_in=delivery.t_in)

    def _emits(self, ctx: PartitionContext, session: _Session, updates: list[Update],
               source: Event | None, *, t_in: float) -> list[Emit]:
        key = ctx.stream("transcript")
        emits: list[Emit] = []
        for u in updates:
            committed = u.kind == "committed"
            fields: dict[str, Any] = dict(
                seq=session.next_seq, kind=u.kind, utterance=max(0, u.utterance), text=u.text,
                lang=u.lang, source_lang=u.source_lang, task=u.task,
                sample_start=u.sample_start, sample_end=max(u.sample_start, u.sample_end),
                final=u.final, capture_start=u.capture_start, capture_end=u.capture_end,
                words=[Word(word=w.text.strip(), start=w.start, end=w.end, prob=w.probability)
                       for w in u.words],
            )
            if source is not None:
                event = ctx.derive(Transcript, source, t_in=t_in, **fields)
            else:  # catching up after a takeover: no input event to derive from
                event = Transcript(room=ctx.partition.room, session=ctx.partition.session,
                                   **fields)
            emits.append(Emit(key, event, dedup=committed))
            if committed:
                session.next_seq += 1
                session.committed_text.append(u.text)
                del session.committed_text[:-20]
        return emits

