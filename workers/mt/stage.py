"""The MT stage on the bus: a session's transcripts in, one translation stream per target language out.

One :class:`SessionEngine` per owned transcript stream (``transcript:{room}:{session}``), for
the room's target languages (``ctx.targets``, kept current by the runtime's discovery) so a
listener who joins gets translations from then on. Committed transcripts go through the
clause segmenter and come out as committed translations (deduplicated, see
:mod:`workers.mt.takeover` for their ``seq``); partial transcripts become live captions
(partial translations, not deduplicated, only on fast routes, never spoken); the end marker
flushes what is held and is forwarded into every target's translation stream. Translating
runs in a thread so the event loop keeps serving the other streams. After a takeover the
held text is rebuilt from the streams (:mod:`workers.mt.takeover`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bus import clock
from bus.events import Event, Transcript, Translation
from bus.logs import get_logger
from bus.stage import Delivery, Emit, PartitionContext, Reject, Stage

from . import langs
from .config import MTSettings, build_router
from .engine import SessionEngine, Skip, TranslationOut
from .errors import BackendUnavailable, InputRejected, MTError, StartupError
from .glossary import GlossaryCache
from .router import Router
from .takeover import find_checkpoint, handled_pieces, translation_seq

log = get_logger("s2st.mt")

# release reasons after which the span is the last one of its utterance
_UTTERANCE_ENDS = frozenset({"final", "switch", "flush"})


@dataclass
class _Session:
    """What the stage keeps per owned transcript stream."""

    engine: SessionEngine
    room_targets: list[str] = field(default_factory=list)  # as the registry spells them
    streams_written: set[str] = field(default_factory=set)  # languages given output so far
    sources: dict[int, tuple[Transcript, float]] = field(default_factory=dict)  # held pieces
    partial: tuple[Transcript, float] | None = None  # the last partial offered for captions
    glossary: dict[str, dict[str, str]] | None = None  # the room's, as last given to the engine

    def codes(self, lang: str) -> list[str]:
        """The room's codes that the engine's (normalized) ``lang`` stands for."""
        return [code for code in self.room_targets if _normalize(code) == lang]


def _normalize(code: str) -> str:
    try:
        return langs.normalize(code)
    except ValueError:
        return code


class MTStage(Stage):
    name = "mt"
    input_family = "transcript"
    accepts = (Transcript,)
    wrong_input = "the mt stage reads transcripts, not {type!r} events"
    tick_interval_s = 0.2
    glossary_refresh_s = 2.0  # how often a room's glossary is re-read from Redis

    def __init__(
        self, settings: MTSettings | None = None, *, router: Router | None = None,
    ) -> None:
        self.settings = settings or MTSettings.from_env()
        self.router = router
        self._own_router = router is None
        self._warmed: set[tuple[str, str]] = set()
        self._skipped: Counter[str] = Counter()  # "src-tgt reason" -> spans not translated
        self._skip_lock = threading.Lock()  # engines run in worker threads
        self._glossaries = GlossaryCache(self.glossary_refresh_s)

    # --- lifecycle -----------------------------------------------------------------------

    async def setup(self) -> None:
        if self.router is None:
            self.router = await asyncio.to_thread(build_router, self.settings)
        try:
            await asyncio.to_thread(self._load_models)
        except StartupError:
            if self._own_router:
                await asyncio.to_thread(self.router.close)
            raise

    def _load_models(self) -> None:
        """Load every model a rule names now, not at its first sentence: one that cannot load
        stops the worker with the reason, unless S2ST_MT_MODEL_FALLBACK=on lets its pairs
        use the next backend of their rule (logged, counted, in ``health``)."""
        assert self.router is not None
        for name in self.settings.rule_models():
            try:
                self.router.backend(name)
            except BackendUnavailable as exc:
                if not self.settings.model_fallback:
                    spec, reason = self.settings.models[name], " ".join(str(exc).split())
                    raise StartupError(
                        f"MT model {name!r} ({spec.get('kind')}, {spec.get('path')}) cannot "
                        f"load: {reason.rstrip('.')}. Fix it in "
                        f"S2ST_MT_MODELS, or set S2ST_MT_MODEL_FALLBACK=on to translate its "
                        f"pairs with the next backend of their rule"
                    ) from exc
                log.warning("mt model unavailable: its pairs fall back to the next backend of "
                            "their rule", backend=name, error=str(exc))

    def health(self) -> dict[str, Any]:
        """What `s2st status` shows of this worker: models that could not load, pairs on a
        fallback route or with no route, spans skipped per pair and reason."""
        out = self.router.health() if self.router is not None else {}
        with self._skip_lock:
            if self._skipped:
                out["skipped"] = dict(sorted(self._skipped.items()))
        return out

    def _on_skip(self, skip: Skip) -> None:
        with self._skip_lock:
            self._skipped[f"{skip.pair} {skip.reason}"] += 1

    async def teardown(self) -> None:
        if self.router is not None and self._own_router:
            await asyncio.to_thread(self.router.close)

    async def on_acquire(self, ctx: PartitionContext) -> None:
        """Rebuild the held text of a session another worker (or an earlier life) handled."""
        state = self._new_session(ctx)
        ctx.state = state
        targets = await self._room_targets(ctx, state)
        checkpoint = await find_checkpoint(ctx, targets, self.settings.engine.context_sentences)
        pieces = await handled_pieces(ctx, checkpoint.resume_seq)
        if checkpoint.resume_seq > 0:
            state.engine.resume_from(checkpoint.resume_seq, 0, checkpoint.context)
        if pieces:
            await asyncio.to_thread(self._refeed, state, pieces, time.monotonic())
            log.info("mt session resumed", part=str(ctx.partition), from_seq=checkpoint.resume_seq,
                     refed=len(pieces), held_words=len(state.engine.segmenter.held_text.split()))
        await self._apply_targets(ctx, state, targets)
        await self._refresh_glossary(ctx, state)

    async def on_release(self, ctx: PartitionContext) -> None:
        ctx.state = None

    # --- input ---------------------------------------------------------------------------

    async def handle(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        """Every entry (control events included) first brings the room's targets and glossary
        up to date; then the base class dispatches it."""
        await self._refresh_targets(ctx, await self._session(ctx))
        return await super().handle(ctx, delivery)

    def end_outputs(self, ctx: PartitionContext) -> list[str]:
        """Every translation stream written or wanted (the room's targets)."""
        state: _Session = ctx.state
        return [ctx.stream("translation", code)
                for code in sorted(state.streams_written | set(state.room_targets))]

    async def on_end(self, ctx: PartitionContext, delivery: Delivery) -> list[Emit]:
        """Translate what is held, then forward the end marker."""
        state: _Session = ctx.state
        outs = await asyncio.to_thread(state.engine.end)
        return self._emits(ctx, state, outs) + self.forward_end(ctx, delivery)

    async def on_event(self, ctx: PartitionContext, event: Event,
                       delivery: Delivery) -> list[Emit]:
        assert isinstance(event, Transcript)
        state: _Session = ctx.state
        try:
            if event.kind == "committed":
                outs = await asyncio.to_thread(self._committed, state, event, time.monotonic())
                state.sources[event.seq] = (event, delivery.t_in)
            else:
                if ctx.more_pending or self.settings.engine.captions == "off":
                    return []  # a newer transcript is already queued: caption that one
                outs = await asyncio.to_thread(state.engine.on_partial, event, time.monotonic())
                state.partial = (event, delivery.t_in)
        except InputRejected as exc:
            raise Reject(str(exc)) from exc
        return self._emits(ctx, state, outs, fallback=(event, delivery.t_in))

    async def on_tick(self, ctx: PartitionContext, now: float) -> list[Emit]:
        state = ctx.state
        if not isinstance(state, _Session):
            return []
        await self._refresh_targets(ctx, state)
        outs = await asyncio.to_thread(state.engine.tick, time.monotonic())
        return self._emits(ctx, state, outs)

    # --- engine calls (in a worker thread) ---------------------------------------------------

    @staticmethod
    def _committed(state: _Session, event: Transcript, now: float) -> list[TranslationOut]:
        outs = state.engine.on_committed(event, now)
        return outs + state.engine.tick(now)  # a busy stream gets no on_tick: time out here too

    @staticmethod
    def _refeed(state: _Session, pieces: list[Transcript], now: float) -> None:
        """Push handled pieces without translating (their translations were published)."""
        engine = state.engine
        engine.set_targets([])
        for event in pieces:
            try:
                engine.on_committed(event, now)
            except InputRejected:
                continue  # it was dead-lettered
            state.sources[event.seq] = (event, clock.now())

    # --- output ------------------------------------------------------------------------------

    def _emits(
        self, ctx: PartitionContext, state: _Session, outs: list[TranslationOut],
        fallback: tuple[Event, float] | None = None,
    ) -> list[Emit]:
        emits: list[Emit] = []
        for out in outs:
            if out.kind == "committed":
                source, t_in = state.sources.get(out.src_seq) or fallback or _newest(state, out)
                seq, dedup = translation_seq(out), True
            else:
                source, t_in = state.partial or fallback or _newest(state, out)
                seq, dedup = source.seq, False
            for code in state.codes(out.lang):
                event = ctx.derive(
                    Translation, source, t_in=t_in, seq=seq, kind=out.kind,
                    utterance=int(out.utterance), src_seq=out.src_seq,
                    src_seq_first=out.src_seq_first, src_lang=out.src_lang, lang=code,
                    text=out.text, source_text=out.source_text, route=out.route,
                    sample_start=out.sample_start, sample_end=out.sample_end,
                    capture_start=out.capture_start, capture_end=out.capture_end,
                    final=out.kind == "committed" and out.reason in _UTTERANCE_ENDS,
                )
                emits.append(Emit(ctx.stream("translation", code), event, dedup=dedup))
                state.streams_written.add(code)
        # forget the pieces whose text is no longer held
        first_held, _offset = state.engine.segmenter.resume_point
        for seq in [s for s in state.sources if s < first_held]:
            del state.sources[seq]
        return emits

    # --- target languages ------------------------------------------------------------------------

    def _new_session(self, ctx: PartitionContext) -> _Session:
        assert self.router is not None, "setup() builds the router"
        engine = SessionEngine(self.router, [], self.settings.engine, session=str(ctx.partition),
                               on_skip=self._on_skip)
        return _Session(engine)

    async def _session(self, ctx: PartitionContext) -> _Session:
        if not isinstance(ctx.state, _Session):
            await self.on_acquire(ctx)
        assert isinstance(ctx.state, _Session)
        return ctx.state

    async def _room_targets(self, ctx: PartitionContext, state: _Session) -> list[str]:
        """The room's target languages as of the runtime's last discovery (announcements of
        new listeners wake it at once)."""
        return list(ctx.targets)

    async def _refresh_targets(self, ctx: PartitionContext, state: _Session) -> None:
        await self._apply_targets(ctx, state, await self._room_targets(ctx, state))
        await self._refresh_glossary(ctx, state)

    async def _refresh_glossary(self, ctx: PartitionContext, state: _Session) -> None:
        """The room's glossary (workers.mt.glossary), re-read at most every
        ``glossary_refresh_s`` for all the room's sessions on this worker."""
        if not state.room_targets:
            return
        glossary = await self._glossaries.get(ctx.redis, ctx.keys, ctx.partition.room,
                                              state.engine.targets)
        if glossary is not state.glossary:
            state.glossary = glossary
            state.engine.set_glossary(glossary)

    async def _apply_targets(self, ctx: PartitionContext, state: _Session, targets: list[str]) -> None:
        if targets == state.room_targets and state.engine.targets == _normalized(targets):
            return
        added = [t for t in targets if t not in state.room_targets]
        state.room_targets = list(targets)
        state.engine.set_targets(_normalized(targets))
        if added:
            log.info("mt targets", part=str(ctx.partition), targets=targets, added=added)
        await self._warm(ctx.session.source_lang, _normalized(added))

    async def _warm(self, src: str, targets: Iterable[str]) -> None:
        """Start the pipelines (load the models) of new pairs before their first sentence."""
        if src == "auto":
            return
        for tgt in targets:
            pair = (_normalize(src), tgt)
            if pair in self._warmed or self.router is None:
                continue
            self._warmed.add(pair)
            try:
                route = await asyncio.to_thread(self.router.warm, *pair)
                log.info("mt pair ready", pair=f"{pair[0]}-{pair[1]}", route=str(route))
            except MTError as exc:
                log.warning("mt pair unavailable: that target is skipped", pair=f"{pair[0]}-{pair[1]}",
                            error=str(exc))


def _normalized(targets: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(_normalize(t) for t in targets))


def _newest(state: _Session, out: TranslationOut) -> tuple[Event, float]:
    """The source event to derive ``out`` from when its own is not known (should not happen)."""
    if state.sources:
        return state.sources[max(state.sources)]
    raise RuntimeError(f"no source event for the translation of seq {out.src_seq}")
