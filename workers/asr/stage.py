"""The ASR stage on the bus: audio chunks -> partial and committed transcripts.

One :class:`~workers.asr.streaming.StreamingRecognizer` per owned session stream. All model
work runs on one decoding thread; sessions whose decode is due while another batch runs are
decoded together in the next batch (:class:`DecodeScheduler`), so a worker with many sessions
batches them on its own. Committed transcripts get seq 0, 1, 2... per session and are
deduplicated by the bus; partial ones carry the seq the next commit will get.

Takeover: :meth:`ASRStage.on_acquire` reads this stage's last committed transcript (which
utterance, up to which sample, its text) and re-reads from the audio stream the current
utterance's chunks that the previous owner had already acknowledged; the recognizer resumes
from the committed point, so no committed word is dropped or repeated.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from bus.events import AudioChunk, ControlEvent, Event, Transcript, Word, decode_event
from bus.logs import get_logger
from bus.stage import Delivery, Emit, PartitionContext, Reject, Stage

from .batching import BatchScheduler
from .decoder import SAMPLE_RATE, DecoderOptions, WhisperDecoder
from .decoder import Word as EngineWord
from .streaming import AudioChunk as EngineChunk
from .streaming import RecognizerState, StreamConfig, StreamingRecognizer, Update

log = get_logger("s2st.asr")
T = TypeVar("T")
REBUILD_SCAN = 400  # entries scanned back for the last commit / the utterance's audio


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


class DecodeScheduler:
    """Runs recognizer work on one thread; due decodes of many sessions go in one batch."""

    def __init__(self, batcher: BatchScheduler) -> None:
        self.batcher = batcher
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="asr")
        self._queue: dict[Any, tuple[StreamingRecognizer, asyncio.Future[list[Update]]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="asr-batches")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (anything touching a recognizer or the model) on the decoding thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    async def decode(self, key: Any, rec: StreamingRecognizer) -> list[Update]:
        fut: asyncio.Future[list[Update]] = asyncio.get_running_loop().create_future()
        self._queue[key] = (rec, fut)
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, {}
            if not batch:
                continue
            recognizers = {k: rec for k, (rec, _f) in batch.items()}
            try:
                results = await self.call(partial(self.batcher.run, recognizers))
            except Exception as exc:  # the sessions' handlers see it and retry
                for _rec, fut in batch.values():
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for key, (_rec, fut) in batch.items():
                if not fut.done():
                    fut.set_result(results.get(key, []))


class ASRStage(Stage):
    name = "asr"
    input_family = "audio"

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
        state, next_seq, history = await self._last_commit(ctx)
        session = _Session(StreamingRecognizer(self.decoder, config, state=state), next_seq,
                           committed_text=history)
        ctx.state = session
        handled = await ctx.handled_until()
        if handled is None:
            return
        chunks, last_seq = await self._acked_chunks(ctx, handled, state)
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

    async def _last_commit(
            self, ctx: PartitionContext) -> tuple[RecognizerState | None, int, list[str]]:
        """Where the previous owner got to, from the transcript stream."""
        raw = await ctx.redis.xrevrange(ctx.stream("transcript"), "+", "-", count=REBUILD_SCAN)
        committed: list[Transcript] = []
        for _id, fields in raw:
            try:
                ev = decode_event(fields)
            except ValueError:
                continue
            if isinstance(ev, Transcript) and ev.kind == "committed":
                committed.append(ev)
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
            words=tuple(EngineWord(" " + w.word, w.start, w.end, w.prob)
                        for ev in open_utterance for w in ev.words),
        )
        return state, last.seq + 1, history

    async def _acked_chunks(self, ctx: PartitionContext, handled: str,
                            state: RecognizerState | None) -> tuple[list[EngineChunk], int]:
        """The current utterance's chunks the previous owner had already acknowledged."""
        raw = await ctx.redis.xrevrange(ctx.input_key, handled, "-", count=REBUILD_SCAN)
        chunks: list[EngineChunk] = []
        last_seq = -1
        for _id, fields in raw:
            try:
                ev = decode_event(fields)
            except ValueError:
                continue
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
            chunks.append(_engine_chunk(ev))
            if ev.utt_start:
                break
        chunks.reverse()
        return chunks, last_seq

    # -- handling ----------------------------------------------------------------------
    async def handle(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        session: _Session | None = ctx.state
        ev = delivery.event
        if session is None:
            if delivery.is_end:
                return [Emit(ctx.stream("transcript"), ctx.end_marker(ev, t_in=delivery.t_in),
                             dedup=False)]
            raise Reject("this worker cannot recognize the session's language")
        assert self.scheduler is not None
        if isinstance(ev, ControlEvent):
            if ev.action != "end":
                return []
            updates = await self.scheduler.call(session.rec.end_utterance)
            emits = self._emits(ctx, session, updates, ev, t_in=delivery.t_in)
            emits.append(Emit(ctx.stream("transcript"),
                              ctx.end_marker(ev, t_in=delivery.t_in, seq=session.next_seq),
                              dedup=False))
            return emits
        if not isinstance(ev, AudioChunk):
            raise Reject(f"an ASR stage reads audio chunks, not {ev.type!r} events")
        if ev.rate != SAMPLE_RATE:
            raise Reject(f"audio must be {SAMPLE_RATE} Hz, not {ev.rate}")
        if ev.seq <= session.last_chunk:
            return []  # the same chunk written twice (a producer retried its write)
        session.last_chunk = ev.seq
        if ev.utterance < 0:
            return []  # silence between utterances (sent only with --send-all)
        chunk = _engine_chunk(ev)
        rec = session.rec
        updates = await self.scheduler.call(lambda: rec.feed(chunk, decode=False))
        if not ctx.more_pending and rec.decode_due:
            updates += await self.scheduler.decode(ctx.partition, rec)
        return self._emits(ctx, session, updates, ev, t_in=delivery.t_in)

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


def _engine_chunk(ev: AudioChunk) -> EngineChunk:
    return EngineChunk.from_pcm(
        ev.pcm, utterance=ev.utterance, offset=ev.offset, capture_start=ev.capture_start,
        capture_end=ev.capture_end, utt_start=ev.utt_start, utt_end=ev.utt_end, seq=ev.seq,
    )
