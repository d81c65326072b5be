"""The TTS engine: text of one translated segment in, speech pieces out, as each is ready.

For every piece of the segment (see splitter) the configured backends of the language are
tried in order, the fallback (espeak-ng) last. A backend that raises is counted and logged
and the next one speaks that piece and the rest of the segment (a voice that switched
back mid-sentence would be jarring); the next segment tries the configured one again. If
every one fails the piece is a short silence, so the parts of a segment always arrive
complete and in order and a session never stalls.

A voice must also be in time (see pacing.SynthesisCost): given a segment's `Timing`, a piece
that the voice would finish after it is due goes to the next voice of the chain, and the
next piece tries the first voice again. With `max_rtf`, so does a piece of a voice whose
running real-time factor here is above it. Nothing is demoted for the whole run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .audio import Float, finish_piece, gated_rms_dbfs, silence, to_int16_bytes
from .backends import (
    BackendUnavailable,
    SynthesisError,
    Synthesizer,
    base_lang,
    create_backend,
)
from .config import TtsConfig
from .pacing import SynthesisCost
from .splitter import ends_clause, ends_sentence, split_text
from .text import clean_text, truncate_words
from .voices import pick_voice

log = logging.getLogger(__name__)

SILENT_PIECE_S = 0.1


@dataclass(frozen=True)
class SpeechPiece:
    """One playable piece of a segment: int16 LE mono PCM at `rate`."""

    part: int  # index of the piece within the segment, from 0
    last: bool  # the segment's final piece
    text: str  # what this piece says
    pcm: bytes
    rate: int
    samples: int
    duration: float  # seconds, samples / rate
    voice: str
    backend: str  # the backend that spoke it, "none" for the silence of a failed piece
    lang: str
    synth_s: float  # wall time spent producing this piece
    fallback: bool  # spoken by a backend later in the chain than the first one
    passed_over: tuple[str, ...] = ()  # voices that would have been too late for this piece


@dataclass(frozen=True)
class Timing:
    """When a segment's pieces are due, in seconds from the call to `TtsEngine.speak`."""

    first_due_s: float  # the first piece should be ready by then
    heard_s: float = 0.0  # the listener has audio queued until then (<= 0: none)


@dataclass
class TtsStats:
    """Counters of what the engine did; `failures` is per backend."""

    segments: int = 0
    pieces: int = 0
    empty: int = 0  # segments with nothing speakable
    truncated: int = 0  # segments cut to max_chars
    fallbacks: int = 0  # pieces spoken by a later backend of the chain
    silent: int = 0  # pieces no backend could speak
    failures: Counter[str] = field(default_factory=Counter)
    passed_over: Counter[str] = field(default_factory=Counter)  # pieces a voice was too slow for

    def as_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "pieces": self.pieces,
            "empty": self.empty,
            "truncated": self.truncated,
            "fallbacks": self.fallbacks,
            "silent": self.silent,
            "failures": dict(self.failures),
            "passed_over": dict(self.passed_over),
        }


class TtsEngine:
    """Speaks text with the per-language backend chain; plain, synchronous, no I/O of its own.

    `backends` may supply ready instances by name (tests, shared models); others are created
    on first use from `workers.tts.backends.FACTORIES` and load their models lazily.
    """

    def __init__(
        self, config: TtsConfig | None = None, backends: Mapping[str, Synthesizer] | None = None
    ) -> None:
        self.config = config or TtsConfig()
        self.stats = TtsStats()
        self._backends: dict[str, Synthesizer] = dict(backends or {})
        self._skip_until: dict[str, float] = {}
        self.cost = SynthesisCost()  # what each voice costs here, from the pieces it spoke
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(1)

    def set_parallel(self, parallel: int) -> None:
        """How many pieces may be synthesized at once by voices other than the fallback (it
        is a program that takes milliseconds, and never waits for a slot)."""
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, not {parallel}")
        self._slots = threading.BoundedSemaphore(parallel)

    def backend(self, name: str) -> Synthesizer:
        with self._lock:
            if name not in self._backends:
                self._backends[name] = create_backend(name)
            return self._backends[name]

    def chain(self, lang: str) -> list[str]:
        """The configured chain of ``lang``, the fallback last."""
        return self.config.chain(lang)

    def real_time_factor(self, text: str, lang: str, backend: str) -> float:
        """Synthesis time over audio time of ``text`` with ``backend`` alone (loaded); the
        measure also goes into the voice's running cost."""
        started = time.perf_counter()
        samples, name, _, _ = self._synthesize(text, lang, [backend], "", "", None)
        elapsed = time.perf_counter() - started
        if name != backend or not samples.size:
            return float("inf")
        return elapsed / (samples.size / self.config.output_rate)

    def can_speak(self, lang: str) -> bool:
        """True when some backend of the language's chain supports it (loads no model)."""
        for name in self.chain(lang):
            try:
                if self.backend(name).supports(lang):
                    return True
            except Exception as exc:  # a backend that cannot even be created speaks nothing
                log.warning("tts backend %s cannot be created: %s", name, exc)
        return False

    def warm_up(self, langs: Iterable[str]) -> dict[str, str]:
        """Load the first usable backend of each language now; returns lang -> backend name.

        Call it before the first segment so model loading is not paid by a listener.
        """
        ready: dict[str, str] = {}
        for lang in langs:
            _, name, _, _ = self._synthesize("ok", lang, self.chain(lang), "", "", None)
            ready[lang] = name
        return ready

    def speak(
        self,
        text: str,
        lang: str,
        *,
        session: str = "",
        speaker: str = "",
        voice: str | None = None,
        speed: float = 1.0,
        fast: bool = False,
        timing: Timing | None = None,
    ) -> Iterator[SpeechPiece]:
        """Yield the pieces of one segment in order, each as soon as it is synthesized.

        Yields nothing when the text holds nothing speakable. `voice` forces a voice of the
        first backend; otherwise each backend picks a stable voice for (session, speaker).
        `speed` scales the voices' pace (see pacing.py); `fast` skips to the fallback voice
        (a segment so late that only the fastest voice catches up). Once a voice fails on a
        piece, the one that took over speaks the rest of the segment: switching back mid-way
        would change the voice within a sentence. `timing` says when the pieces are due
        (counted from this call): a voice that would be late passes that piece on.
        """
        due = heard = None
        if timing is not None:
            now = time.monotonic()
            due, heard = now + timing.first_due_s, now + max(0.0, timing.heard_s)
        return self._speak(text, lang, session, speaker, voice, speed, fast, due, heard)

    def _speak(
        self, text: str, lang: str, session: str, speaker: str, voice: str | None,
        speed: float, fast: bool, due: float | None, heard: float | None,
    ) -> Iterator[SpeechPiece]:
        self.stats.segments += 1
        cleaned = clean_text(text)
        if len(cleaned) > self.config.max_chars:
            self.stats.truncated += 1
            log.warning(
                "tts text of %d chars cut to %d (lang=%s)",
                len(cleaned),
                self.config.max_chars,
                lang,
            )
            cleaned = truncate_words(cleaned, self.config.max_chars)
        pieces = split_text(cleaned, self.config.split)
        if not pieces:
            self.stats.empty += 1
            log.info("tts: nothing speakable in %r (lang=%s)", text[:80], lang)
            return
        chain = self.chain(lang)
        if fast and self.config.fallback in chain:
            chain = chain[chain.index(self.config.fallback) :]
        start = 0  # position in the chain of the voice speaking this segment
        for index, piece_text in enumerate(pieces):
            started = time.perf_counter()
            slack = None if due is None else due - time.monotonic()
            position, passed, slot = self._in_time(piece_text, lang, chain, start, speed, slack)
            try:
                samples, name, used_voice, fell_back = self._synthesize(
                    piece_text, lang, chain, session, speaker, voice, speed, position
                )
            finally:
                if slot:
                    self._slots.release()
            if name in chain and chain.index(name) != position:
                start = chain.index(name)  # a voice failed: the one that took over goes on
            # (not "none": a silent piece leaves the next one to the same voices)
            self.stats.pieces += 1
            rate = self.config.output_rate
            if due is not None and heard is not None:  # the next piece is due when this ends
                heard = max(heard, time.monotonic()) + samples.size / rate
                due = heard + self.config.pace.gap_s
            yield SpeechPiece(
                part=index,
                last=index == len(pieces) - 1,
                text=piece_text,
                pcm=to_int16_bytes(samples),
                rate=rate,
                samples=int(samples.size),
                duration=samples.size / rate,
                voice=used_voice,
                backend=name,
                lang=lang,
                synth_s=time.perf_counter() - started,
                fallback=fell_back,
                passed_over=passed,
            )

    def _in_time(
        self, text: str, lang: str, chain: list[str], start: int, speed: float,
        slack: float | None,
    ) -> tuple[int, tuple[str, ...], bool]:
        """The position in ``chain`` (from ``start``) of the first voice expected to have
        ``text`` ready within ``slack`` seconds, counting the wait for a free slot (and, with
        max_rtf, to run within it here); the voices passed over; whether a slot is now held
        (the caller releases it). The fallback takes no slot; the last voice is never passed
        over."""
        passed: list[str] = []
        key = base_lang(lang)
        for position in range(start, len(chain)):
            name = chain[position]
            if name == self.config.fallback:
                return position, tuple(passed), False
            last = position == len(chain) - 1
            expected = self.cost.predict(key, name, chars=len(text), speed=speed)
            rtf = self.cost.rtf(key, name)
            reason = ""
            if not last and slack is not None and expected is not None and expected > slack:
                reason = "late"
            elif not last and self.config.max_rtf > 0 and rtf is not None \
                    and rtf > self.config.max_rtf:
                reason = "too slow"
            else:
                wait = None if last or slack is None else max(0.0, slack - (expected or 0.0))
                if self._slots.acquire(timeout=wait):
                    return position, tuple(passed), True
                reason = "busy"  # another piece holds the voice past this one's due time
            passed.append(name)
            self.stats.passed_over[name] += 1
            self.cost.passed_over(key, name)
            log.info(
                "tts piece passed from %s to the next voice: %s (lang=%s, expected %s s, "
                "due in %s s, running rtf %s)", name, reason, lang,
                "-" if expected is None else f"{expected:.2f}",
                "-" if slack is None else f"{slack:.2f}", "-" if rtf is None else f"{rtf:.2f}",
            )
        return start, tuple(passed), False

    def _pause_after(self, piece_text: str, speed: float = 1.0) -> float:
        """The pause after a piece; a faster pace shortens pauses more than words (as a
        speaker who hurries does), so a listener who is behind catches up sooner."""
        last_word = piece_text.rsplit(" ", 1)[-1]
        if ends_sentence(last_word):
            pause = self.config.sentence_pause_s
        elif ends_clause(last_word):
            pause = self.config.clause_pause_s
        else:
            return 0.0
        return pause / max(1.0, speed) ** 2

    def _synthesize(
        self,
        text: str,
        lang: str,
        chain: list[str],
        session: str,
        speaker: str,
        voice: str | None,
        speed: float = 1.0,
        start: int = 0,
    ) -> tuple[Float, str, str, bool]:
        """(finished samples at the output rate, backend, voice, fell back) of the first
        backend from ``chain[start]`` on that succeeds; a backend whose audio cannot be
        finished counts as failed. "Fell back" is relative to the whole chain: the rest of a
        segment whose first voice failed still counts as spoken by a later backend."""
        for position, name in enumerate(chain[start:], start):
            if self._skip_until.get(name, 0.0) > time.monotonic():
                continue
            try:
                backend = self.backend(name)
                if not backend.supports(lang):
                    continue
                voices = backend.voices(lang)
                chosen = (
                    voice
                    if voice is not None and position == 0 and voice in voices
                    else pick_voice(voices, session, speaker)
                )
                began = time.perf_counter()
                audio = backend.synthesize(text, lang, chosen, speed=speed)
                spent = time.perf_counter() - began
                samples = finish_piece(
                    audio.pcm,
                    audio.rate,
                    target_dbfs=self.config.target_dbfs,
                    pause_s=self._pause_after(text, speed),
                    output_rate=self.config.output_rate,
                )
                if gated_rms_dbfs(samples, self.config.output_rate) is None:
                    raise SynthesisError(f"{name} returned silence")
                self.cost.observe(base_lang(lang), name, chars=len(text), speed=speed,
                                  synth_s=spent, audio_s=audio.duration)
            except BackendUnavailable as exc:
                self._count_failure(name, lang, exc)
                self._skip_until[name] = time.monotonic() + self.config.retry_unavailable_s
                continue
            except Exception as exc:  # any crash of a backend must not stop the segment
                self._count_failure(name, lang, exc)
                continue
            fell_back = position > 0
            if fell_back:
                self.stats.fallbacks += 1
            return samples, name, chosen, fell_back
        self.stats.silent += 1
        log.error("tts: no backend could speak %r (lang=%s, chain=%s)", text[:80], lang, chain)
        return silence(SILENT_PIECE_S, self.config.output_rate), "none", "", True

    def _count_failure(self, name: str, lang: str, exc: BaseException) -> None:
        self.stats.failures[name] += 1
        log.warning(
            "tts backend %s failed (lang=%s): %s: %s",
            name,
            lang,
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, BackendUnavailable),
        )
