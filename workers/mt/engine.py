"""One session's MT: committed transcript pieces in, one translation per target language out.

The worker owns one :class:`SessionEngine` per session stream and hands it the session's
transcript events in order; the engine returns the translation events to publish. It holds no
connection and starts no thread: time comes in as ``now`` (any monotonic clock in seconds, the
same one for every call) and ``tick(now)`` is how held text times out.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from bus.events import Transcript

from . import langs, metrics
from .captions import CaptionStabilizer
from .casing import ends_sentence, fit_span
from .errors import BackendFailure, BackendUnavailable, InputRejected, MTError, UnsupportedPair
from .protect import protect, restore
from .router import Router, Translation
from .segmenter import ClauseSegmenter, Piece, Span

log = logging.getLogger(__name__)

Kind = Literal["partial", "committed"]
CaptionMode = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class TranscriptIn:
    """The fields of a transcript event the engine reads."""

    seq: int
    kind: Kind
    utterance: str
    text: str
    lang: str
    sample_start: int
    sample_end: int
    capture_start: float
    capture_end: float
    final: bool = False

    @classmethod
    def from_event(cls, fields: Mapping[str, Any]) -> TranscriptIn:
        """Pick and check the fields of a transcript event (extra fields are ignored)."""
        try:
            kind = str(fields["kind"])
            if kind not in ("partial", "committed"):
                raise InputRejected(f"unknown transcript kind {kind!r}")
            return cls(
                seq=int(fields["seq"]),
                kind=cast(Kind, kind),
                utterance=str(fields["utterance"]),
                text=fields["text"] if isinstance(fields["text"], str) else _not_text(fields["text"]),
                lang=str(fields["lang"]),
                sample_start=int(fields["sample_start"]),
                sample_end=int(fields["sample_end"]),
                capture_start=float(fields["capture_start"]),
                capture_end=float(fields["capture_end"]),
                final=bool(fields.get("final", False)),
            )
        except KeyError as exc:
            raise InputRejected(f"transcript event without {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise InputRejected(f"malformed transcript event: {exc}") from exc


# What the engine takes: the bus's (validated) transcript event, or the engine's own record
# (benchmarks and tests; a hand-made dict through TranscriptIn.from_event). Only the fields of
# TranscriptIn are read; the utterance is an opaque id (the engine's outputs carry it as text).
TranscriptEvent = TranscriptIn | Transcript


def _not_text(value: object) -> str:
    raise InputRejected(f"transcript text is {type(value).__name__}, not str")


@dataclass(frozen=True)
class TranslationOut:
    """One translation event to publish (``kind="partial"``: captions only, never spoken)."""

    kind: Kind
    lang: str
    src_lang: str
    text: str
    source_text: str
    route: str
    utterance: str
    src_seq: int  # the last source transcript seq it covers
    src_seq_first: int
    sample_start: int
    sample_end: int
    capture_start: float
    capture_end: float
    resume_seq: int  # where the text still held starts, for a takeover: see resume_from()
    resume_offset: int
    reason: str  # why the span was released: boundary, final, timeout, flush, length, switch


@dataclass(frozen=True)
class Skip:
    """A translation that was not produced, and why (also logged and counted)."""

    lang: str
    src_lang: str
    src_seq_first: int
    src_seq: int
    error: str
    reason: str = "error"  # no_route, backend_failure, empty or error

    @property
    def pair(self) -> str:
        return f"{self.src_lang}-{self.lang}"


def skip_reason(exc: Exception) -> str:
    """The ``reason`` label of a skipped translation."""
    if isinstance(exc, UnsupportedPair):
        return "no_route"
    if isinstance(exc, BackendFailure | BackendUnavailable):
        return "backend_failure"
    return "error"


@dataclass
class EngineConfig:
    hold_timeout_s: float = 1.5
    # the hold when the listener has nothing left to hear (None: always hold_timeout_s;
    # the worker's default, S2ST_MT_IDLE_HOLD_S, is 0.5)
    idle_hold_s: float | None = None
    min_clause_words: int = 5
    max_held_words: int = 40
    context_sentences: int = 3
    max_input_words: int = 2000
    captions: CaptionMode = "auto"  # "auto": only on routes whose backends are fast
    caption_interval_s: float = 0.5


@dataclass
class _Target:
    lang: str
    captions: dict[str, CaptionStabilizer] = field(default_factory=dict)  # by source language


class SessionEngine:
    def __init__(
        self,
        router: Router,
        targets: Iterable[str],
        config: EngineConfig | None = None,
        session: str = "",
        on_skip: Callable[[Skip], None] | None = None,
    ) -> None:
        self.router = router
        self.config = config or EngineConfig()
        self.session = session
        self.on_skip = on_skip  # told of every skipped translation (the worker's health)
        self.segmenter = ClauseSegmenter(
            hold_timeout_s=self.config.hold_timeout_s,
            idle_hold_s=self.config.idle_hold_s,
            min_clause_words=self.config.min_clause_words,
            max_words=self.config.max_held_words,
        )
        self.context: deque[str] = deque(maxlen=self.config.context_sentences)
        self.skipped: deque[Skip] = deque(maxlen=100)
        self.stats: Counter[str] = Counter()
        self._targets: dict[str, _Target] = {}
        self._last_partial: TranscriptEvent | None = None
        self._warned: set[tuple[str, str, str]] = set()
        self.glossary: dict[str, dict[str, str]] = {}  # target language -> {term: translation}
        self._sentence_open = False  # the last span released did not end its sentence
        self.set_targets(targets)

    # --- configuration -------------------------------------------------------------------

    @property
    def targets(self) -> list[str]:
        return list(self._targets)

    def set_targets(self, targets: Iterable[str]) -> None:
        """The room's listener languages (may change between events)."""
        wanted = list(dict.fromkeys(langs.normalize(t) for t in targets))
        self._targets = {t: self._targets.get(t) or _Target(t) for t in wanted}

    def resume_from(self, seq: int, offset: int = 0, context: Sequence[str] = ()) -> None:
        """Rebuild after a takeover: the last published translation's ``resume_seq`` and
        ``resume_offset``, and optionally its recent ``source_text`` values as context. Then
        re-feed the committed transcript events from ``seq`` on."""
        self.segmenter.resume_from(seq, offset)
        self.context.extend(context)
        if context:
            self._sentence_open = not ends_sentence(context[-1])

    def set_glossary(self, glossary: Mapping[str, Mapping[str, str]]) -> None:
        """The room's glossaries: target language -> {source term: target term}."""
        self.glossary = {langs.normalize(lang): dict(terms) for lang, terms in glossary.items()
                         if terms}

    def translate_text(self, text: str, src: str, tgt: str, context: Sequence[str] = ()
                       ) -> Translation:
        """Translate with the glossary's terms and the numbers protected (see
        :mod:`workers.mt.protect`), cased for the span's place in its sentence."""
        if src == tgt:
            return self.router.translate(text, src, tgt, context)
        guarded = protect(text, src, tgt, self.glossary.get(tgt))
        result = self.router.translate(guarded.text, src, tgt, context)
        restored = restore(result.text, guarded)
        source = guarded.text  # a glossary term first keeps its own case (a placeholder's)
        if restored is None:  # a placeholder lost on the way: translate the plain text
            self.stats["unprotected"] += 1
            log.info("session %s: %s->%s placeholders lost, translated unprotected",
                     self.session, src, tgt)
            result = self.router.translate(text, src, tgt, context)
            restored, source = result.text, text
        return replace(result, text=fit_span(source, restored, not self._sentence_open, tgt))

    # --- events ----------------------------------------------------------------------------

    def on_transcript(self, event: TranscriptEvent, now: float) -> list[TranslationOut]:
        if event.kind == "committed":
            return self.on_committed(event, now)
        if event.kind == "partial":
            return self.on_partial(event, now)
        raise InputRejected(f"unknown transcript kind {event.kind!r}")

    def on_committed(self, event: TranscriptEvent, now: float) -> list[TranslationOut]:
        """A committed piece: returns the translations of whatever it completed."""
        piece = self._piece(event)
        spans = self.segmenter.push(piece, now)
        return self._translate_spans(spans)

    def on_partial(self, event: TranscriptEvent, now: float) -> list[TranslationOut]:
        """A partial transcript (the utterance's not yet committed words): captions only."""
        src = self._lang(event.lang)
        self._check_length(event.text)
        held = self.segmenter.held_text
        source = f"{held} {event.text}".strip() if held else " ".join(event.text.split())
        if not source:
            return []
        self._last_partial = event
        out: list[TranslationOut] = []
        for target in self._targets.values():
            stabilizer = self._captions_for(target, src)
            if stabilizer is not None:
                out += self._caption(stabilizer, event, src, target.lang, source, now)
        return out

    def tick(self, now: float) -> list[TranslationOut]:
        """Release held text that waited too long, and translate a throttled partial that is
        still waiting (call it every few hundred ms)."""
        out = self._translate_spans(self.segmenter.poll(now))
        event = self._last_partial
        if event is not None:
            src = self._lang(event.lang)
            for target in self._targets.values():
                stabilizer = target.captions.get(src)
                if stabilizer is not None:
                    out += self._caption(stabilizer, event, src, target.lang, None, now)
        return out

    def end(self) -> list[TranslationOut]:
        """End of the session's stream: translate everything still held."""
        return self._translate_spans(self.segmenter.flush())

    # --- internals -------------------------------------------------------------------------

    def _lang(self, code: str) -> str:
        try:
            return langs.normalize(code)
        except ValueError as exc:
            raise InputRejected(str(exc)) from exc

    def _check_length(self, text: str) -> None:
        words = len(text.split())
        if words > self.config.max_input_words:
            raise InputRejected(
                f"transcript of {words} words is over the limit of {self.config.max_input_words}"
            )

    def _piece(self, event: TranscriptEvent) -> Piece:
        if not isinstance(event.text, str):
            raise InputRejected(f"transcript text is {type(event.text).__name__}, not str")
        self._check_length(event.text)
        if not event.text.strip():
            self.stats["empty"] += 1
            log.info("session %s: empty committed transcript seq %d skipped", self.session, event.seq)
        return Piece(
            seq=event.seq, text=event.text, lang=self._lang(event.lang), utterance=str(event.utterance),
            sample_start=event.sample_start, sample_end=event.sample_end,
            capture_start=event.capture_start, capture_end=event.capture_end, final=event.final,
        )

    def _captions_for(self, target: _Target, src: str) -> CaptionStabilizer | None:
        if self.config.captions == "off":
            return None
        if src not in target.captions:
            try:
                route = self.router.route(src, target.lang)
            except UnsupportedPair:
                return None
            if self.config.captions == "auto" and not route.fast:
                return None
            context = self.context

            def translate(text: str, src: str = src, tgt: str = target.lang) -> str:
                return self.translate_text(text, src, tgt, list(context)).text

            target.captions[src] = CaptionStabilizer(translate, self.config.caption_interval_s)
        return target.captions[src]

    def _translate_spans(self, spans: Sequence[Span]) -> list[TranslationOut]:
        out: list[TranslationOut] = []
        for span in spans:
            out += self._translate_span(span)
        return out

    def _translate_span(self, span: Span) -> list[TranslationOut]:
        self.stats["spans"] += 1
        context = list(self.context)
        out: list[TranslationOut] = []
        self._last_partial = None
        for target in self._targets.values():
            for stabilizer in target.captions.values():
                stabilizer.reset()
            try:
                result = self.translate_text(span.text, span.lang, target.lang, context)
            except Exception as exc:  # any failing backend: the other targets still get the span
                self._skip(span, target.lang, exc, skip_reason(exc))
                continue
            if not result.text.strip():
                self._skip(span, target.lang, MTError("the backend returned an empty translation"),
                           "empty")
                continue
            if result.unavailable:
                metrics.FALLBACKS.labels(f"{span.lang}-{target.lang}", ",".join(result.unavailable),
                                         result.route).inc()
            out.append(
                TranslationOut(
                    kind="committed", lang=target.lang, src_lang=span.lang, text=result.text,
                    source_text=span.text, route=result.route, utterance=span.utterance,
                    src_seq=span.last_seq, src_seq_first=span.first_seq,
                    sample_start=span.sample_start, sample_end=span.sample_end,
                    capture_start=span.capture_start, capture_end=span.capture_end,
                    resume_seq=span.resume_seq, resume_offset=span.resume_offset,
                    reason=span.reason,
                )
            )
        self.context.append(span.text)
        self._sentence_open = not ends_sentence(span.text)
        self.stats["translations"] += len(out)
        return out

    def _skip(self, span: Span, tgt: str, exc: Exception, reason: str) -> None:
        self.stats["skipped"] += 1
        skip = Skip(tgt, span.lang, span.first_seq, span.last_seq, f"{type(exc).__name__}: {exc}",
                    reason)
        self.skipped.append(skip)
        metrics.SKIPPED.labels(skip.pair, reason).inc()
        if self.on_skip is not None:
            self.on_skip(skip)
        key = (span.lang, tgt, type(exc).__name__)
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        log.log(
            level,
            "session %s: translation %s->%s of seq %d..%d skipped: %s",
            self.session, span.lang, tgt, span.first_seq, span.last_seq, skip.error,
        )

    def _caption(
        self,
        stabilizer: CaptionStabilizer,
        event: TranscriptEvent,
        src: str,
        tgt: str,
        source: str | None,
        now: float,
    ) -> list[TranslationOut]:
        try:
            caption = stabilizer.offer(source, now) if source is not None else stabilizer.tick(now)
        except MTError as exc:
            log.debug("caption %s->%s skipped: %s", src, tgt, exc)
            return []
        if caption is None:
            return []
        self.stats["captions"] += 1
        return [self._caption_out(event, src, tgt, caption.text, caption.source_text)]

    def _caption_out(
        self, event: TranscriptEvent, src: str, tgt: str, text: str, source_text: str
    ) -> TranslationOut:
        resume_seq, resume_offset = self.segmenter.resume_point
        return TranslationOut(
            kind="partial", lang=tgt, src_lang=src, text=text, source_text=source_text,
            route=str(self.router.route(src, tgt)), utterance=str(event.utterance),
            src_seq=event.seq, src_seq_first=event.seq,
            sample_start=event.sample_start, sample_end=event.sample_end,
            capture_start=event.capture_start, capture_end=event.capture_end,
            resume_seq=resume_seq, resume_offset=resume_offset, reason="partial",
        )
