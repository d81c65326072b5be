"""The TTS engine: text of one translated segment in, speech pieces out, as each is ready.

For every piece of the segment (see splitter) the configured backends of the language are
tried in order, the fallback (espeak-ng) last. A backend that raises is counted and logged
and the next one speaks that piece and the rest of the segment (a voice that switched
back mid-sentence would be jarring); the next segment tries the configured one again. If
every one fails the piece is a short silence, so the parts of a segment always arrive
complete and in order and a session never stalls.
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
from .backends import BackendUnavailable, SynthesisError, Synthesizer, create_backend
from .config import TtsConfig
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "pieces": self.pieces,
            "empty": self.empty,
            "truncated": self.truncated,
            "fallbacks": self.fallbacks,
            "silent": self.silent,
            "failures": dict(self.failures),
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
        self._demoted: dict[str, set[str]] = {}  # lang -> backends too slow for real time here
        self._lock = threading.Lock()

    def backend(self, name: str) -> Synthesizer:
        with self._lock:
            if name not in self._backends:
                self._backends[name] = create_backend(name)
            return self._backends[name]

    def chain(self, lang: str) -> list[str]:
        """The configured chain of ``lang`` without the backends demoted on this host."""
        demoted = self._demoted.get(lang.strip().lower(), set())
        return [name for name in self.config.chain(lang) if name not in demoted]

    def demote(self, lang: str, backend: str) -> None:
        """Stop using ``backend`` for ``lang`` (it cannot keep real time here); never the
        fallback, so the language is still spoken."""
        if backend != self.config.fallback:
            self._demoted.setdefault(lang.strip().lower(), set()).add(backend)

    def real_time_factor(self, text: str, lang: str, backend: str) -> float:
        """Synthesis time over audio time of ``text`` with ``backend`` alone (loaded)."""
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
    ) -> Iterator[SpeechPiece]:
        """Yield the pieces of one segment in order, each as soon as it is synthesized.

        Yields nothing when the text holds nothing speakable. `voice` forces a voice of the
        first backend; otherwise each backend picks a stable voice for (session, speaker).
        `speed` scales the voices' pace (see pacing.py); `fast` skips to the fallback voice
        (a segment so late that only the fastest voice catches up). Once a voice fails on a
        piece, the one that took over speaks the rest of the segment: switching back mid-way
        would change the voice within a sentence.
        """
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
            samples, name, used_voice, fell_back = self._synthesize(
                piece_text, lang, chain, session, speaker, voice, speed, start
            )
            if name in chain:  # not "none": a silent piece leaves the next one to the same voice
                start = chain.index(name)
            self.stats.pieces += 1
            rate = self.config.output_rate
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
            )

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
                audio = backend.synthesize(text, lang, chosen, speed=speed)
                samples = finish_piece(
                    audio.pcm,
                    audio.rate,
                    target_dbfs=self.config.target_dbfs,
                    pause_s=self._pause_after(text, speed),
                    output_rate=self.config.output_rate,
                )
                if gated_rms_dbfs(samples, self.config.output_rate) is None:
                    raise SynthesisError(f"{name} returned silence")
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
