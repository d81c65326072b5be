"""The TTS stage on the bus: committed translations in, speech pieces out as each is ready.

One input stream per session and language (`translation:{room}:{session}:{lang}`). Each
committed translation is synthesized by the engine, piece by piece, in a thread, and every
piece is written to the room's speech stream of that language (`speech:{room}:{lang}`) the
moment it is ready, so a player can start the first piece while the rest is synthesized.
The input is acknowledged once the segment's last piece is written. If the worker dies
mid-segment, the segment is redelivered, synthesized again, and the parts already written
are skipped by the bus's deduplication on (session, seq, part).

Partial translations (captions) are acknowledged and ignored. The end marker is forwarded
to the room's speech stream. Start-up (which voices to load, their first speed figures) is
in :mod:`workers.tts.warmup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncGenerator, Iterator, Sequence

from bus import clock
from bus.events import Event, Speech, Translation
from bus.logs import get_logger
from bus.stage import Delivery, Emit, PartitionContext, Reject, Stage

from . import metrics
from .backends import base_lang
from .config import TtsConfig
from .engine import SpeechPiece, Timing, TtsEngine
from .pacing import Pacer
from .warmup import TtsStartupError, check_ready, default_warm_langs, measure

__all__ = ["StreamLost", "TTSStage", "TtsStartupError", "default_warm_langs"]

log = get_logger("s2st.tts")

class StreamLost(RuntimeError):
    """The stream's lease was lost mid-segment: stop, the new owner speaks it again."""


class TTSStage(Stage):
    """Speaks the committed translations of each (session, language) stream.

    ``engine``: a ready engine (tests inject backends through it); by default one from the
    S2ST_TTS_* variables. ``warm_langs``: languages whose backends are loaded in ``setup``
    (default: those the backend table names). ``parallel``: pieces synthesized at the same
    time across all streams of this process (each ONNX voice already uses several threads).
    """

    name = "tts"
    input_family = "translation"
    per_lang = True
    accepts = (Translation,)
    wrong_input = "the tts stage reads translations, not {type!r} events"

    def __init__(
        self,
        engine: TtsEngine | None = None,
        *,
        warm_langs: Sequence[str] | None = None,
        parallel: int = 1,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, not {parallel}")
        self.engine = engine or TtsEngine(TtsConfig.from_env())
        self.warm_langs = (
            list(warm_langs) if warm_langs is not None else default_warm_langs(self.engine.config)
        )
        self.parallel = parallel
        self.engine.set_parallel(parallel)  # the engine holds the slots: see _next_piece
        self._speakable: dict[str, bool] = {}
        self._failures_exported: Counter[str] = Counter()

    async def setup(self) -> None:
        """Load the configured voices once, before the first segment."""
        if not self.warm_langs:
            return
        started = time.perf_counter()
        ready = await asyncio.to_thread(self.engine.warm_up, self.warm_langs)
        self._export_failures()
        rtfs = await asyncio.to_thread(measure, self.engine, ready)
        check_ready(self.engine, ready)
        log.info("tts voices ready", voices=ready, rtf=rtfs,
                 seconds=round(time.perf_counter() - started, 2))

    def end_outputs(self, ctx: PartitionContext) -> list[str]:
        return [ctx.room_stream("speech", ctx.partition.lang or "")]

    async def on_event(self, ctx: PartitionContext, event: Event,
                       delivery: Delivery) -> list[Emit]:
        assert isinstance(event, Translation)
        lang = ctx.partition.lang or ""
        if event.kind != "committed":
            return []  # partial translations are captions only
        if event.lang.lower() != lang.lower():
            raise Reject(f"a {event.lang!r} translation in the {lang!r} stream")
        if not await self._can_speak(lang):
            raise Reject(f"no TTS backend speaks {lang!r} "
                         f"(chain: {', '.join(self.engine.chain(lang)) or 'empty'})")
        await self._speak(ctx, delivery, event, ctx.room_stream("speech", lang))
        return []

    async def _speak(
        self, ctx: PartitionContext, delivery: Delivery, event: Translation, out: str
    ) -> None:
        """Write each piece of the segment to ``out`` as soon as it is synthesized, at the
        pace that keeps the listener near the speaker (see pacing.py)."""
        if not isinstance(ctx.state, Pacer):
            ctx.state = Pacer(self.engine.config.pace)
        pacer: Pacer = ctx.state
        pace = pacer.plan(event.capture_end, clock.now(), source_start=event.capture_start,
                          chars=len(event.text))
        metrics.SPEED.labels(event.lang).observe(pace.speed)
        if pace.late:
            metrics.LATE_SEGMENTS.labels(event.lang).inc()
            log.info("segment late: the fast voice speaks it", session=ctx.partition.session,
                     seq=event.seq, lag_s=round(pace.lag_s, 2))
        written = 0
        timing = None
        ready_lag = self.engine.config.pace.ready_lag_s
        if ready_lag > 0:
            now = clock.now()
            timing = Timing(first_due_s=max(pacer.heard_until, event.capture_end + ready_lag) - now,
                            heard_s=pacer.heard_until - now)
        pieces = self._pieces(event.text, event.lang, ctx.partition.session, ctx.session.speaker,
                              speed=pace.speed, fast=pace.late, timing=timing)
        try:
            async with contextlib.aclosing(pieces):
                async for piece in pieces:
                    speech = self._speech(ctx, delivery, event, piece)
                    if not await ctx.publish([Emit(out, speech)]):
                        raise StreamLost(f"lost {ctx.input_key} at part {piece.part}")
                    # the fast voice's rate says nothing of the usual voice's: not learned
                    pacer.written(piece.duration, clock.now(),
                                  chars=0 if pace.late else len(piece.text), speed=pace.speed)
                    if written == 0:
                        metrics.TTFA_SECONDS.labels(event.lang).observe(
                            clock.now() - delivery.t_in)
                    written += 1
                    self._observe(piece)
        except ValueError as exc:
            if written:
                raise
            raise Reject(f"text rejected by the TTS engine: {exc}") from exc
        finally:
            self._export_failures()
        if not written:
            metrics.EMPTY_SEGMENTS.labels(event.lang).inc()

    def _speech(
        self, ctx: PartitionContext, delivery: Delivery, event: Translation, piece: SpeechPiece
    ) -> Speech:
        return ctx.derive(
            Speech, event, t_in=delivery.t_in,
            seq=event.seq, part=piece.part, last=piece.last, lang=event.lang,
            src_seq=event.src_seq, utterance=event.utterance, text=piece.text,
            rate=piece.rate, samples=piece.samples, duration=piece.duration,
            voice=piece.voice, backend=piece.backend, speaker=ctx.session.speaker, pcm=piece.pcm,
        )

    async def _pieces(
        self, text: str, lang: str, session: str, speaker: str, *, speed: float = 1.0,
        fast: bool = False, timing: Timing | None = None,
    ) -> AsyncGenerator[SpeechPiece, None]:
        """The engine's pieces, each synthesized in a thread; the next piece is already being
        synthesized while the caller writes the current one."""
        synthesis = self.engine.speak(text, lang, session=session, speaker=speaker,
                                      speed=speed, fast=fast, timing=timing)
        pending = asyncio.ensure_future(self._next_piece(synthesis))
        try:
            while (piece := await pending) is not None:
                pending = asyncio.ensure_future(self._next_piece(synthesis))
                yield piece
        finally:
            if pending.done():
                if not pending.cancelled():
                    pending.exception()  # retrieved: the caller is already failing
            else:
                pending.cancel()  # a running thread finishes its piece; it is dropped

    async def _next_piece(self, synthesis: Iterator[SpeechPiece]) -> SpeechPiece | None:
        """The next piece, from a thread. The engine waits there for one of its ``parallel``
        slots, and not past the piece's due time: a piece that cannot have the neural voice
        in time goes to the fallback, which needs no slot."""
        return await asyncio.to_thread(next, synthesis, None)

    async def _can_speak(self, lang: str) -> bool:
        key = lang.lower()
        if key not in self._speakable:
            self._speakable[key] = await asyncio.to_thread(self.engine.can_speak, lang)
        return self._speakable[key]

    def _observe(self, piece: SpeechPiece) -> None:
        metrics.PIECES.labels(piece.lang, piece.backend).inc()
        if piece.duration > 0:
            metrics.SYNTH_RTF.labels(piece.lang, piece.backend).observe(
                piece.synth_s / piece.duration)
        if piece.fallback:
            metrics.FALLBACKS.labels(piece.lang, piece.backend).inc()
        for voice in piece.passed_over:
            metrics.PASSED_OVER.labels(piece.lang, voice).inc()
        for voice in (piece.backend, *piece.passed_over):
            rtf = self.engine.cost.rtf(base_lang(piece.lang), voice)
            if rtf is not None:
                metrics.RUNNING_RTF.labels(piece.lang, voice).set(rtf)

    def _export_failures(self) -> None:
        """Bring the Prometheus counter up to the engine's failure counts."""
        for backend, count in list(self.engine.stats.failures.items()):
            delta = count - self._failures_exported[backend]
            if delta > 0:
                metrics.BACKEND_FAILURES.labels(backend).inc(delta)
                self._failures_exported[backend] = count
