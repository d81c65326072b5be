"""Streaming recognition of one session: LocalAgreement-2 over re-decoded utterance audio.

Chunks of an utterance accumulate in a buffer. Whenever enough new audio has arrived the
buffer is re-decoded (with a prompt of the committed text that has scrolled out of it); the
words on which two consecutive hypotheses agree are **committed** and never revised, the rest
is a **partial** tail. Committed sentence ends let the buffer be trimmed, so the cost of a
decode stays bounded however long someone speaks. At the end of the utterance the rest is
committed (``final=True``).

The class is synchronous and owns no I/O: the worker hands it one chunk at a time
(:meth:`StreamingRecognizer.feed`), may postpone decoding while more chunks are queued
(``decode=False``), or collect decode requests of many sessions and run them as one batch
(:meth:`prepare` / :meth:`apply`, see :mod:`workers.asr.batching`). After a takeover a new
recognizer is built from the last committed position and prompt (:class:`RecognizerState`)
and re-fed the current utterance's chunks from the stream (:meth:`StreamingRecognizer.resume`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from .decoder import SAMPLE_RATE, DecodedWord, DecodeRequest, Hypothesis, Task, WhisperDecoder
from .guards import (
    GuardConfig,
    SpeechGate,
    cut_at_audio_end,
    drop_squeezed_repeats,
    is_stock_hallucination,
    looks_like_a_loop,
    looks_like_non_speech,
    strip_repetitions,
    words_on_speech,
)
from .textnorm import normalize_word
from .timeline import Timeline

log = logging.getLogger(__name__)

SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")
MAX_BUFFER_S = 28.0  # Whisper's window is 30 s


@dataclass(frozen=True, slots=True)
class PcmBlock:
    """The samples of one audio chunk of a session (16 kHz mono), as the recognizer holds
    them: a numpy array and the chunk's place in the session (the wire event is
    :class:`bus.events.AudioChunk`)."""

    utterance: int
    offset: int  # session sample offset of the first sample
    audio: np.ndarray  # int16 PCM or float32 in [-1, 1]
    capture_start: float  # wall clock (epoch s) of the first sample
    capture_end: float  # wall clock of the last sample
    utt_start: bool = False
    utt_end: bool = False
    seq: int | None = None

    @classmethod
    def from_pcm(
        cls,
        pcm: bytes,
        *,
        utterance: int,
        offset: int,
        capture_start: float,
        capture_end: float | None = None,
        utt_start: bool = False,
        utt_end: bool = False,
        seq: int | None = None,
        rate: int = SAMPLE_RATE,
    ) -> PcmBlock:
        """Build from int16 little-endian PCM bytes, as carried by the bus."""
        if rate != SAMPLE_RATE:
            raise ValueError(f"audio chunks must be {SAMPLE_RATE} Hz, not {rate}")
        if len(pcm) % 2:
            raise ValueError("PCM payload has an odd number of bytes (expected int16)")
        audio = np.frombuffer(pcm, dtype="<i2")
        if capture_end is None:
            capture_end = capture_start + max(0, len(audio) - 1) / SAMPLE_RATE
        return cls(utterance, offset, audio, capture_start, capture_end, utt_start, utt_end, seq)

    @property
    def samples(self) -> int:
        return len(self.audio)

    def float_audio(self) -> np.ndarray:
        if self.audio.dtype == np.int16:
            return self.audio.astype(np.float32) / 32768.0
        return np.asarray(self.audio, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Update:
    """A transcript event: a tentative tail (partial) or words that will never change."""

    kind: Literal["partial", "committed"]
    utterance: int
    text: str
    words: tuple[DecodedWord, ...]  # times in session seconds (session sample offset / 16 kHz)
    lang: str  # language of the text ("en" when the translate task is on)
    source_lang: str  # language that was spoken
    sample_start: int  # session sample offsets of the audio the text covers
    sample_end: int
    capture_start: float  # wall clock when that audio was captured
    capture_end: float
    final: bool = False  # last commit of the utterance
    task: Task = "transcribe"

    @property
    def committed(self) -> bool:
        return self.kind == "committed"


@dataclass(frozen=True, slots=True)
class StreamConfig:
    language: str = "en"  # a Whisper language code, or "auto" (multilingual models)
    task: Task = "transcribe"  # "translate": English text from any language
    min_decode_s: float = 0.5  # new audio needed before the buffer is re-decoded
    prompt_chars: int = 200  # committed text given to the decoder as context
    trim_sentence_s: float = 8.0  # longer buffers are cut at the last committed sentence end
    trim_word_s: float = 14.0  # longer buffers are cut at the last committed word
    force_commit_s: float = 22.0  # longer buffers commit all but the last `hold_back_s`
    hold_back_s: float = 2.0
    # `auto`: the utterance's language is fixed once detected with `lang_lock_prob` after
    # `lang_lock_s` of audio (or at once when it matches the session's previous language),
    # and at the latest after `lang_force_s`. Nothing is committed before that.
    lang_lock_s: float = 1.5
    lang_lock_prob: float = 0.8
    lang_force_s: float = 6.0
    dedupe_window_s: float = 1.0  # n-gram overlap check near the last commit
    resume_context_s: float = 1.0  # audio kept before the committed point after a takeover
    hold_pause_s: float = 0.6  # the last word of a hypothesis commits after this much pause
    guards: GuardConfig = field(default_factory=GuardConfig)

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', not {self.task!r}")
        if not self.language:
            raise ValueError("language must be a Whisper code or 'auto'")
        if not 0 < self.trim_sentence_s <= self.trim_word_s <= self.force_commit_s <= MAX_BUFFER_S:
            raise ValueError("need 0 < trim_sentence_s <= trim_word_s <= force_commit_s <= 28")


@dataclass(frozen=True, slots=True)
class RecognizerState:
    """What a new owner needs to continue a session without dropping or repeating words.

    All of it is in the transcript stream: the last committed event's utterance, its
    ``sample_end`` and ``final`` flag, the recent committed text (for the prompt) and the
    words already committed in the open utterance, with their times.
    """

    utterance: int | None  # the utterance being recognized (None: between utterances)
    committed_until: int | None  # session sample offset where committed words end
    prompt: str = ""  # committed text of the session before ``words``
    language: str | None = None  # language locked for the current utterance
    utterance_closed: bool = False  # the utterance's final commit was already published
    # the open utterance's committed words, times in session seconds (offset / 16 kHz); with
    # them the new owner decodes exactly as the old one did: committed words in its buffer
    # are forced as the decoder's prefix, so the words after them are neither dropped nor
    # repeated. Without them (an older state) only the prompt carries the text.
    words: tuple[DecodedWord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["words"] = [[w.text, w.start, w.end, w.probability] for w in self.words]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecognizerState:
        return cls(
            utterance=data.get("utterance"),
            committed_until=data.get("committed_until"),
            prompt=data.get("prompt") or "",
            language=data.get("language"),
            utterance_closed=bool(data.get("utterance_closed", False)),
            words=tuple(DecodedWord(str(t), float(a), float(b), float(p))
                        for t, a, b, p in data.get("words") or ()),
        )


@dataclass(slots=True)
class PendingDecode:
    """A decode requested by :meth:`StreamingRecognizer.prepare`, to hand to :meth:`apply`."""

    request: DecodeRequest
    buffer_start: int  # utterance coordinates of the decoded audio
    buffer_end: int
    final: bool


class StreamingRecognizer:
    """LocalAgreement-2 streaming recognizer for one session (see the module docstring)."""

    def __init__(
        self,
        decoder: WhisperDecoder | None,
        config: StreamConfig | None = None,
        *,
        state: RecognizerState | None = None,
    ) -> None:
        self.decoder = decoder
        self.config = config or StreamConfig()
        if decoder is not None and not decoder.multilingual:
            if self.config.language not in ("en", "auto") or self.config.task == "translate":
                raise ValueError(
                    f"model is English-only: language {self.config.language!r} / task "
                    f"{self.config.task!r} need a multilingual model such as 'base'"
                )
        self._gate = SpeechGate(self.config.guards.vad_threshold)
        self._history = ""  # committed text of the session (tail kept for prompts)
        self._closed_utterance: int | None = None
        self._session_language: str | None = None  # last language locked (`auto`)
        self._resume_at: int | None = None  # session offset to treat as committed after resume
        self._resume_words: tuple[DecodedWord, ...] = ()  # committed words to restore at that point
        self._pending: PendingDecode | None = None
        self._utterance: int | None = None
        self._language: str | None = None
        self._start_utterance(None)
        if state is not None:
            self._history = state.prompt
            if state.utterance is not None:
                if state.utterance_closed:
                    self._closed_utterance = state.utterance
                else:
                    self._utterance = state.utterance
                    self._resume_at = state.committed_until
                    self._resume_words = state.words
                    self._language = state.language
                    self._lang_locked = state.language is not None
            self._session_language = state.language
        self.decodes = 0  # counters for metrics
        self.skipped_decodes = 0
        self.max_buffer_seconds = 0.0  # longest buffer decoded (bounded by the trim policy)

    # -- utterance state ---------------------------------------------------------------
    def _start_utterance(self, utterance: int | None) -> None:
        self._utterance = utterance
        self._audio = np.zeros(0, dtype=np.float32)  # buffer (utterance coordinates below)
        self._buffer_start = 0  # utterance position of self._audio[0]
        self._timeline = Timeline()
        self._gate.reset()
        self._committed_end = 0.0  # utterance seconds where committed words end
        self._committed_words: list[DecodedWord] = []  # this utterance (utterance seconds)
        self._scrolled = 0  # committed words of this utterance already out of the buffer
        self._tail: list[DecodedWord] = []  # previous hypothesis' uncommitted words
        self._last_partial = ""
        self._decoded_until = 0  # utterance position of the last decode's buffer end
        self._language = None
        self._lang_locked = False
        self._ending = False
        self._any_commit = False

    @property
    def utterance(self) -> int | None:
        return self._utterance

    @property
    def language(self) -> str | None:
        """Language of the current utterance (detected when the session says `auto`)."""
        return self._language

    @property
    def buffer_seconds(self) -> float:
        return len(self._audio) / SAMPLE_RATE

    @property
    def decode_due(self) -> bool:
        """True when a decode would run now (enough new audio, or the utterance ended)."""
        if self._utterance is None or len(self._timeline) == 0 or self._resume_at is not None:
            return False
        if self._ending:
            return True
        new = (len(self._timeline) - self._decoded_until) / SAMPLE_RATE
        return new >= self.config.min_decode_s

    # -- feeding -----------------------------------------------------------------------
    def feed(self, chunk: PcmBlock, *, decode: bool = True) -> list[Update]:
        """Add one chunk; decode when due and ``decode`` is true; return new updates.

        Pass ``decode=False`` while more chunks of this session are already queued: the
        next decode covers all of them (this is how the worker keeps up under load).
        """
        updates: list[Update] = []
        if chunk.samples and chunk.audio.ndim != 1:
            raise ValueError("audio chunk must be mono (1-D)")
        if self._closed_utterance is not None and chunk.utterance <= self._closed_utterance:
            return updates  # replayed chunk of a finished utterance
        if self._utterance is not None and chunk.utterance < self._utterance:
            return updates  # replayed chunk of an older utterance
        if self._utterance is not None and chunk.utterance != self._utterance:
            updates += self.end_utterance()  # the capture side never sent utt_end
        if self._utterance is None:
            self._start_utterance(chunk.utterance)
        self._ingest(chunk)
        if chunk.utt_end:
            self._ending = True
        if decode:
            updates += self.decode_now()
        elif self.decode_due:
            self.skipped_decodes += 1
        return updates

    def _ingest(self, chunk: PcmBlock) -> None:
        audio = chunk.float_audio()
        offset = chunk.offset
        expected = self._timeline.next_offset
        if expected is not None and offset < expected:  # overlap: replayed samples
            skip = expected - offset
            if skip >= len(audio):
                return
            audio = audio[skip:]
            capture_start = chunk.capture_start + skip / SAMPLE_RATE
            offset = expected
        else:
            capture_start = chunk.capture_start
        if not len(audio):
            return
        self._timeline.append(offset, len(audio), capture_start, chunk.capture_end)
        self._audio = np.concatenate([self._audio, audio])
        self._gate.push(audio)
        if self._resume_at is not None:
            self._try_resume()
        if self.buffer_seconds > MAX_BUFFER_S:  # decodes were skipped for too long
            log.warning(
                "utterance %s: buffer over %.0f s, dropping its oldest audio",
                self._utterance,
                MAX_BUFFER_S,
            )
            self._drop_front(len(self._audio) - int(MAX_BUFFER_S * SAMPLE_RATE))

    def _try_resume(self) -> None:
        """After a takeover: continue where the committed words end."""
        assert self._resume_at is not None
        position = self._timeline.position_of(self._resume_at)
        if position is None:
            first = self._timeline.offset_at(0)
            if self._resume_at < first:  # committed point before this audio: all is new
                position = 0
            else:
                return  # not reached yet: keep reading
        self._resume_at = None
        self._committed_end = position / SAMPLE_RATE
        self._any_commit = position > 0
        self._decoded_until = position
        restored = self._restore_words()
        if restored:
            # As if this recognizer had committed them: they are the decoder's forced prefix
            # while in the buffer, and the buffer is trimmed by the usual policy.
            self._committed_words = restored
            self._committed_end = max(self._committed_end, restored[-1].end)
            self._any_commit = True
            self._scrolled = sum(1 for w in restored
                                 if w.end <= self._buffer_start / SAMPLE_RATE + 0.05)
            self._trim()
            return
        # No word times: keep a little audio before the committed point as acoustic context;
        # the words decoded there are dropped again by time and by overlap with the prompt.
        keep = round(self.config.resume_context_s * SAMPLE_RATE)
        self._drop_front(position - keep - self._buffer_start)

    def _restore_words(self) -> list[DecodedWord]:
        """The state's committed words in utterance time; those before the re-read audio
        (a long utterance partly out of the scan) become part of the prompt history."""
        restored: list[DecodedWord] = []
        for w in self._resume_words:
            start = self._timeline.position_of(round(w.start * SAMPLE_RATE))
            if start is None:
                if not restored:
                    self._history = _join(self._history, w.text)
                continue
            end = self._timeline.position_of(round(w.end * SAMPLE_RATE))
            end = start if end is None else max(start, end)
            restored.append(DecodedWord(w.text, start / SAMPLE_RATE, end / SAMPLE_RATE,
                                        w.probability))
        self._resume_words = ()
        return restored

    # -- decoding ----------------------------------------------------------------------
    def prepare(self) -> PendingDecode | None:
        """The decode to run now, or None when none is due (for batching)."""
        if not self.decode_due:
            return None
        end = self._buffer_start + len(self._audio)
        if not self._gate.has_speech(
            max(self._committed_end, self._buffer_start / SAMPLE_RATE),
            end / SAMPLE_RATE,
            self.config.guards.min_speech_s,
        ):
            self._decoded_until = end  # nothing but silence/noise since the last commit
            return None
        if self.config.language == "auto":
            language = self._language if self._lang_locked else None
        else:
            language = self.config.language
        # Committed words still in the buffer are forced as a prefix: the decoder only
        # generates what follows them (cheaper, and committed text cannot drift).
        prefix = self._utterance_text(self._scrolled)
        committed_in_buffer = max(0.0, self._committed_end - self._buffer_start / SAMPLE_RATE)
        self._pending = PendingDecode(
            DecodeRequest(
                self._audio.copy(),
                language,
                self.config.task,
                prompt=self._prompt(),
                prefix=prefix,
                new_audio_s=self.buffer_seconds - (committed_in_buffer if prefix else 0.0),
            ),
            self._buffer_start,
            end,
            self._ending,
        )
        return self._pending

    def decode_now(self) -> list[Update]:
        """Decode the buffer if a decode is due (needs a decoder)."""
        pending = self.prepare()
        if pending is None:
            return self._finish() if self._ending else []
        if self.decoder is None:
            raise RuntimeError("no decoder: use prepare()/apply() with a batch decoder")
        return self.apply(pending, self.decoder.decode(pending.request))

    def apply(self, pending: PendingDecode, hyp: Hypothesis) -> list[Update]:
        """Take a decode result: commit what two hypotheses agree on, return updates."""
        if pending is not self._pending:
            raise ValueError("apply() needs the PendingDecode returned by the last prepare()")
        self._pending = None
        self.decodes += 1
        decoded_s = (pending.buffer_end - pending.buffer_start) / SAMPLE_RATE
        self.max_buffer_seconds = max(self.max_buffer_seconds, decoded_s)
        self._decoded_until = pending.buffer_end
        self._update_language(hyp, pending)
        words = self._clean(hyp, pending)
        updates: list[Update] = []
        if pending.final:
            self._tail = []
            if words:
                self._commit(words, updates, final=True)
                return updates + self._finish(marker=False)
            return self._finish()
        agreed = 0
        if self.config.language == "auto" and not self._lang_locked:
            self._tail = []  # language still uncertain: commit nothing yet
        for old, new in zip(self._tail, words, strict=False):
            if normalize_word(old.text) != normalize_word(new.text):
                break
            agreed += 1
        if agreed and agreed == len(words) and not self._pause_after(words[-1], pending):
            agreed -= 1  # its trailing punctuation is not decided until more audio is heard
        self._commit(words[:agreed], updates)
        self._tail = words[agreed:]
        buffer_s = (pending.buffer_end - self._buffer_start) / SAMPLE_RATE
        if buffer_s > self.config.force_commit_s and self._tail:
            limit = pending.buffer_end / SAMPLE_RATE - self.config.hold_back_s
            forced = [w for w in self._tail if w.end <= limit]
            self._commit(forced, updates)
            self._tail = self._tail[len(forced) :]
        self._trim()
        partial = self._partial()
        if partial is not None:
            updates.append(partial)
        return updates

    def _update_language(self, hyp: Hypothesis, pending: PendingDecode) -> None:
        if self.config.language != "auto":
            self._language = self.config.language
            return
        if self._lang_locked:
            return
        cfg = self.config
        self._language = hyp.language
        heard = pending.buffer_end / SAMPLE_RATE
        prob = hyp.language_probability
        if (
            pending.final
            or heard >= cfg.lang_force_s
            or (heard >= cfg.lang_lock_s and prob >= cfg.lang_lock_prob)
            or (hyp.language == self._session_language and prob >= 0.5)
        ):
            self._lang_locked = True
            self._session_language = hyp.language

    def _clean(self, hyp: Hypothesis, pending: PendingDecode) -> list[DecodedWord]:
        """Guards, then shift to utterance time and drop words already committed."""
        cfg = self.config.guards
        if not hyp.words or looks_like_non_speech(hyp, cfg):
            return []
        if looks_like_a_loop(hyp, cfg) and not pending.final:
            # A failed decode: nothing of it is agreed on or shown. The next decode, with more
            # audio, gets another chance; at the utterance's end the loop is cut below.
            return []
        offset = pending.buffer_start / SAMPLE_RATE
        words = cut_at_audio_end(hyp.words, hyp.duration, cfg)
        words = words_on_speech(words, self._gate, offset, cfg)
        if cfg.min_word_probability > 0:
            words = [w for w in words if w.probability >= cfg.min_word_probability]
        if words and is_stock_hallucination(" ".join(w.text for w in words)):
            speech = self._gate.speech_seconds(offset, pending.buffer_end / SAMPLE_RATE)
            if hyp.avg_logprob < -0.5 or speech < 1.0:
                return []
        words = [w.shifted(offset) for w in words]
        if not pending.request.prefix and self._any_commit and self._committed_end > offset:
            # The buffer starts before the committed point (context after a takeover):
            # words that end there were already published.
            words = [w for w in words if w.end > self._committed_end + 0.1]
        while words and not normalize_word(words[0].text):
            words.pop(0)  # punctuation for an already committed word: too late to attach
        words = self._drop_overlap(words)
        said = self._committed_tail_words(16)
        words = drop_squeezed_repeats(words, cfg, said[-1] if said else None)
        return strip_repetitions(words, cfg, said)

    def _pause_after(self, word: DecodedWord, pending: PendingDecode) -> bool:
        """True when the decoded audio goes on without speech for a while after ``word``."""
        end = pending.buffer_end / SAMPLE_RATE
        pause = self.config.hold_pause_s
        return end - word.end >= pause and not self._gate.has_speech(word.end + 0.1, end)

    def _drop_overlap(self, words: list[DecodedWord]) -> list[DecodedWord]:
        """Drop words at the start that repeat the last committed words (1-5 word n-grams)."""
        if not words or not self._any_commit:
            return words
        if words[0].start - self._committed_end > self.config.dedupe_window_s:
            return words
        tail = [normalize_word(t) for t in self._committed_tail_words(5)]
        head = [normalize_word(w.text) for w in words[:5]]
        for n in range(min(len(tail), len(head)), 0, -1):
            if tail[-n:] == head[:n]:
                return words[n:]
        return words

    def _committed_tail_words(self, n: int) -> list[str]:
        if len(self._committed_words) >= n:
            return [w.text for w in self._committed_words[-n:]]
        earlier = self._history.split()
        own = [w.text for w in self._committed_words]
        return (earlier + own)[-n:]

    def _commit(self, words: Sequence[DecodedWord], updates: list[Update], *,
                final: bool = False) -> None:
        if not words:
            return
        # Keep committed timings monotonic: successive hypotheses may disagree by a frame.
        floor = self._committed_end if self._any_commit else 0.0
        timed: list[DecodedWord] = []
        for w in words:
            start = max(w.start, floor)
            floor = max(w.end, start)
            timed.append(DecodedWord(w.text, start, floor, w.probability))
        words = timed
        self._committed_words.extend(words)
        self._committed_end = max(self._committed_end, words[-1].end)
        self._any_commit = True
        updates.append(self._update("committed", words, final=final))

    def _finish(self, *, marker: bool = True) -> list[Update]:
        """Close the utterance and reset for the next one.

        When the utterance had commits but its last decode added nothing, an empty committed
        update with ``final=True`` tells downstream stages that the utterance is complete.
        """
        updates: list[Update] = []
        utterance = self._utterance
        if marker and self._any_commit:
            updates.append(self._update("committed", [], final=True))
        self._history = _join(self._history, self._utterance_text())
        self._history = self._history[-4 * self.config.prompt_chars :]
        self._closed_utterance = utterance
        self._start_utterance(None)
        return updates

    def end_utterance(self) -> list[Update]:
        """Commit the rest of the current utterance now (e.g. its utt_end never came)."""
        if self._utterance is None:
            return []
        if self._resume_at is not None:  # nothing decodable was read after a takeover
            self._resume_at = None
        self._ending = True
        if len(self._timeline) == 0:
            return self._finish()
        return self.decode_now()

    # -- buffer management -------------------------------------------------------------
    def _trim(self) -> None:
        cfg = self.config
        buffer_s = self.buffer_seconds
        if buffer_s <= cfg.trim_sentence_s:
            return
        start_s = self._buffer_start / SAMPLE_RATE
        cut: float | None = None
        for w in reversed(self._committed_words):
            if w.end <= start_s + 0.05:  # already at (or before) the buffer start
                break
            if w.text.strip().endswith(SENTENCE_END):
                cut = w.end
                break
        if cut is None and buffer_s > cfg.trim_word_s and self._committed_words:
            last = self._committed_words[-1].end
            if last > start_s + 0.05:
                cut = last
        if cut is not None:
            self._drop_front(round(cut * SAMPLE_RATE) - self._buffer_start)

    def _drop_front(self, samples: int) -> None:
        samples = max(0, min(samples, len(self._audio)))
        if not samples:
            return
        self._audio = self._audio[samples:]
        self._buffer_start += samples
        start_s = self._buffer_start / SAMPLE_RATE
        while self._scrolled < len(self._committed_words) and (
            self._committed_words[self._scrolled].end <= start_s + 0.05
        ):
            self._scrolled += 1

    def _prompt(self) -> str:
        text = _join(self._history, self._utterance_text(0, self._scrolled))
        limit = self.config.prompt_chars
        if len(text) <= limit:
            return text
        cut = text[-limit:]
        space = cut.find(" ")
        return cut[space + 1 :] if 0 <= space < 40 else cut

    def _utterance_text(self, start: int = 0, stop: int | None = None) -> str:
        return "".join(w.text for w in self._committed_words[start:stop]).strip()

    # -- output ------------------------------------------------------------------------
    def _partial(self) -> Update | None:
        text = "".join(w.text for w in self._tail).strip()
        if not text or text == self._last_partial:
            return None
        self._last_partial = text
        return self._update("partial", self._tail)

    def _update(
        self, kind: Literal["partial", "committed"], words: Sequence[DecodedWord], *,
        final: bool = False,
    ) -> Update:
        assert self._utterance is not None
        timeline = self._timeline
        if words:
            a = round(words[0].start * SAMPLE_RATE)
            b = round(words[-1].end * SAMPLE_RATE)
        else:  # final marker: the rest of the utterance's audio
            a = round(self._committed_end * SAMPLE_RATE) if self._committed_words else 0
            b = len(timeline)
        b = max(a, b)
        if kind == "partial":
            b = max(b, self._decoded_until)
        sample_start = timeline.offset_at(a)
        sample_end = timeline.offset_at(b)
        session_words = tuple(
            DecodedWord(
                w.text,
                timeline.offset_at(round(w.start * SAMPLE_RATE)) / SAMPLE_RATE,
                timeline.offset_at(round(w.end * SAMPLE_RATE)) / SAMPLE_RATE,
                w.probability,
            )
            for w in words
        )
        source = self._language or self.config.language
        return Update(
            kind=kind,
            utterance=self._utterance,
            text="".join(w.text for w in words).strip(),
            words=session_words,
            lang="en" if self.config.task == "translate" else source,
            source_lang=source,
            sample_start=sample_start,
            sample_end=sample_end,
            capture_start=timeline.capture_time_at(a),
            capture_end=timeline.capture_time_at(max(a, b - 1)),
            final=final,
            task=self.config.task,
        )

    # -- takeover ----------------------------------------------------------------------
    def snapshot(self) -> RecognizerState:
        """The state a new owner needs (all of it also derivable from the transcript stream)."""
        history = self._history[-self.config.prompt_chars * 4 :]
        if self._utterance is None:
            closed = self._closed_utterance
            return RecognizerState(closed, None, history, None, utterance_closed=closed is not None)
        if self._resume_at is not None:
            return RecognizerState(self._utterance, self._resume_at, history,
                                   self._language if self._lang_locked else None,
                                   words=self._resume_words)
        committed_until: int | None = None
        if self._any_commit:
            committed_until = self._timeline.offset_at(round(self._committed_end * SAMPLE_RATE))
        words = tuple(
            DecodedWord(w.text,
                        self._timeline.offset_at(round(w.start * SAMPLE_RATE)) / SAMPLE_RATE,
                        self._timeline.offset_at(round(w.end * SAMPLE_RATE)) / SAMPLE_RATE,
                        w.probability)
            for w in self._committed_words)
        return RecognizerState(self._utterance, committed_until, history,
                               self._language if self._lang_locked else None, words=words)

    @classmethod
    def resume(
        cls,
        decoder: WhisperDecoder | None,
        state: RecognizerState,
        chunks: Iterable[PcmBlock],
        config: StreamConfig | None = None,
    ) -> tuple[StreamingRecognizer, list[Update]]:
        """Rebuild a session after a takeover: the new owner re-reads the current utterance's
        chunks from the stream; words up to ``state.committed_until`` are not emitted again.
        Returns the recognizer and the updates produced while catching up (decoding once).
        """
        rec = cls(decoder, config, state=state)
        updates: list[Update] = []
        for chunk in chunks:
            updates += rec.feed(chunk, decode=False)
        updates += rec.decode_now()
        return rec, updates


def _join(a: str, b: str) -> str:
    a, b = a.strip(), b.strip()
    return f"{a} {b}" if a and b else a or b
