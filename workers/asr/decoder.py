"""One Whisper decoding pass over short audio buffers, batched across sessions.

This drives the CTranslate2 Whisper model directly instead of calling
``WhisperModel.transcribe``, for three reasons that matter to live captions:

* **short encoder windows**: ``transcribe`` always pads the audio to 30 s, so every re-decode
  of a 3 s buffer pays for a 30 s encoder pass. Here the features are padded only to the next
  ``window_step_s`` bucket above the audio (plus a margin), which makes the encoder several
  times cheaper on streaming buffers;
* **bounded output**: the number of generated tokens is capped in proportion to the audio
  length, so a repetition loop can never run to 448 tokens;
* **batching**: buffers of several sessions share one encoder, language-detection, generation
  and alignment call (one batch of same-width windows).

Each result carries the signals that the guards need (no-speech probability, average log
probability, compression ratio) and word timestamps from cross-attention alignment.
"""

from __future__ import annotations

import math
import string
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

SAMPLE_RATE = 16_000
HOP = 160  # samples per mel frame
FRAMES_PER_SECOND = SAMPLE_RATE // HOP  # 100
TOKENS_PER_SECOND = FRAMES_PER_SECOND // 2  # encoder stride 2: 50 positions per second
MAX_FRAMES = 3000  # Whisper's 30 s window
MAX_LENGTH = 448  # Whisper decoder context
PROMPT_TOKENS = MAX_LENGTH // 2 - 1

Task = Literal["transcribe", "translate"]


@dataclass(frozen=True, slots=True)
class DecodedWord:
    """A word as the decoder recognized it; times in seconds relative to the decoded buffer's
    first sample, or from the session's once the recognizer places it (the wire form is
    :class:`bus.events.Word`)."""

    text: str
    start: float
    end: float
    probability: float

    def shifted(self, seconds: float) -> DecodedWord:
        return DecodedWord(self.text, self.start + seconds, self.end + seconds, self.probability)


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    """One buffer to decode. ``language=None`` means detect it (multilingual models only)."""

    audio: np.ndarray  # float32 mono 16 kHz in [-1, 1]
    language: str | None = "en"
    task: Task = "transcribe"
    prompt: str = ""  # earlier text (context only; its audio is not in the buffer)
    prefix: str = ""  # text already fixed for the start of this buffer: decoding continues it
    new_audio_s: float | None = None  # audio after the prefix (bounds the output length)


@dataclass(slots=True)
class Hypothesis:
    """The decoder's best guess for one buffer."""

    words: list[DecodedWord]
    text: str
    language: str
    language_probability: float
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    num_tokens: int
    hit_token_limit: bool = False
    duration: float = 0.0
    token_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DecoderOptions:
    beam_size: int = 1
    window_margin_s: float = 1.0  # silence after the audio inside the encoder window
    window_step_s: float = 2.0  # window widths are multiples of this (fewer shapes)
    full_window: bool = False  # pad every buffer to 30 s like `transcribe` does
    tokens_per_second: float = 8.0  # output cap: normal speech needs about 4-5
    min_tokens: int = 12
    suppress_blank: bool = True
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


def compression_ratio(text: str) -> float:
    """gzip-style ratio: about 1-2 for speech, above 2.4 for loops of repeated text."""
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


class WhisperDecoder:
    """Decode short buffers with one loaded faster-whisper model (shared by many sessions)."""

    def __init__(self, model: WhisperModel, options: DecoderOptions | None = None) -> None:
        self.model = model
        self.options = options or DecoderOptions()
        self.multilingual: bool = bool(model.model.is_multilingual)
        self.n_mels: int = int(model.feature_extractor.mel_filters.shape[0])

    # -- public --------------------------------------------------------------------------
    def decode(self, request: DecodeRequest) -> Hypothesis:
        return self.decode_batch([request])[0]

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        """Decode several buffers in one encoder/generate/align pass each."""
        if not requests:
            return []
        for req in requests:
            self._check(req)
        feats = [self._features(req.audio) for req in requests]
        content = [f.shape[1] for f in feats]
        width = self._window_width(max(content))
        batch = np.zeros((len(requests), self.n_mels, width), dtype=np.float32)
        for i, f in enumerate(feats):
            n = min(f.shape[1], width)
            batch[i, :, :n] = f[:, :n]
        encoder_output = self._encode(batch)

        languages = self._languages(requests, encoder_output)
        tokenizers = [
            self.tokenizer(req.task, lang)
            for req, (lang, _) in zip(requests, languages, strict=True)
        ]
        prefixes = [
            tok.encode(" " + req.prefix.strip()) if req.prefix.strip() else []
            for tok, req in zip(tokenizers, requests, strict=True)
        ]
        prompts = [
            self._prompt(tok, req.prompt) + prefix
            for tok, req, prefix in zip(tokenizers, requests, prefixes, strict=True)
        ]
        limits = [
            self._token_limit(
                req.new_audio_s if req.new_audio_s is not None else len(req.audio) / SAMPLE_RATE
            )
            for req in requests
        ]
        # CTranslate2 counts a forced prefix twice against max_length (in the prompt and
        # in the result), so each row needs prompt + prefix + its own limit.
        max_length = max(
            len(prompt) + len(prefix) + limit + 1
            for prompt, prefix, limit in zip(prompts, prefixes, limits, strict=True)
        )
        results = self._generate(encoder_output, prompts, max_length)

        hyps: list[Hypothesis] = []
        text_tokens: list[list[int]] = []
        for req, tok, res, limit, prefix, (lang, lang_p) in zip(
            requests, tokenizers, results, limits, prefixes, languages, strict=True
        ):
            generated = res.sequences_ids[0][len(prefix) :]  # results repeat the prefix
            tokens = [t for t in generated if t < tok.eot]
            hit_limit = len(tokens) > limit
            tokens = tokens[:limit]
            text = tok.decode(tokens).strip()
            n = len(generated)
            avg_logprob = res.scores[0] * n / (n + 1) if res.scores else -math.inf
            hyps.append(
                Hypothesis(
                    words=[],
                    text=text,
                    language=lang,
                    language_probability=lang_p,
                    no_speech_prob=float(res.no_speech_prob),
                    avg_logprob=float(avg_logprob),
                    compression_ratio=compression_ratio(text),
                    num_tokens=len(tokens),
                    hit_token_limit=hit_limit,
                    duration=len(req.audio) / SAMPLE_RATE,
                    token_ids=tokens,
                )
            )
            text_tokens.append(prefix + tokens)
        self._add_words(
            hyps, tokenizers, encoder_output, text_tokens, content, [len(p) for p in prefixes]
        )
        return hyps

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """Most likely language of a buffer (multilingual models only)."""
        if not self.multilingual:
            return "en", 1.0
        feats = self._features(audio)
        width = self._window_width(feats.shape[1])
        batch = np.zeros((1, self.n_mels, width), dtype=np.float32)
        n = min(feats.shape[1], width)
        batch[0, :, :n] = feats[:, :n]
        return self._detect(self._encode(batch))[0]

    @lru_cache(maxsize=64)  # noqa: B019 - one decoder per loaded model, kept for the process
    def tokenizer(self, task: Task, language: str) -> Tokenizer:
        from faster_whisper.tokenizer import Tokenizer

        return Tokenizer(
            self.model.hf_tokenizer,
            self.multilingual,
            task=task if self.multilingual else None,
            language=language if self.multilingual else None,
        )

    # -- steps -----------------------------------------------------------------------------
    def _check(self, req: DecodeRequest) -> None:
        if req.audio.ndim != 1:
            raise ValueError("audio must be a 1-D mono array")
        if req.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', not {req.task!r}")
        if not self.multilingual:
            if req.task == "translate":
                raise ValueError("the translate task needs a multilingual model (not *.en)")
            if req.language not in (None, "en"):
                raise ValueError(
                    f"an English-only model cannot transcribe {req.language!r}; "
                    "load a multilingual model such as 'base'"
                )
        if len(req.audio) > MAX_FRAMES * HOP:
            raise ValueError(
                f"buffer of {len(req.audio) / SAMPLE_RATE:.1f} s exceeds Whisper's 30 s window"
            )

    def _features(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        feats = self.model.feature_extractor(audio)
        return feats[:, : max(1, feats.shape[1] - 1)]  # drop the frame made of padding only

    def _window_width(self, frames: int) -> int:
        opts = self.options
        if opts.full_window:
            return MAX_FRAMES
        step = max(1, round(opts.window_step_s * FRAMES_PER_SECOND))
        wanted = frames + round(opts.window_margin_s * FRAMES_PER_SECOND)
        return min(MAX_FRAMES, max(step, math.ceil(wanted / step) * step))

    def _encode(self, batch: np.ndarray):  # -> ctranslate2.StorageView
        import ctranslate2

        model = self.model.model
        to_cpu = model.device == "cuda" and len(model.device_index) > 1
        return model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=to_cpu)

    def _detect(self, encoder_output) -> list[tuple[str, float]]:
        out = []
        for ranked in self.model.model.detect_language(encoder_output):
            token, prob = ranked[0]
            out.append((token[2:-2], float(prob)))
        return out

    def _languages(
        self, requests: Sequence[DecodeRequest], encoder_output
    ) -> list[tuple[str, float]]:
        if not self.multilingual:
            return [("en", 1.0)] * len(requests)
        detected: list[tuple[str, float]] | None = None
        langs: list[tuple[str, float]] = []
        for i, req in enumerate(requests):
            if req.language is None:
                if detected is None:
                    detected = self._detect(encoder_output)
                langs.append(detected[i])
            else:
                langs.append((req.language, 1.0))
        return langs

    def _prompt(self, tok: Tokenizer, text: str) -> list[int]:
        prompt: list[int] = []
        text = text.strip()
        if text:
            prompt.append(tok.sot_prev)
            prompt.extend(tok.encode(" " + text)[-PROMPT_TOKENS:])
        prompt.extend(tok.sot_sequence)
        prompt.append(tok.no_timestamps)
        return prompt

    def _token_limit(self, seconds: float) -> int:
        opts = self.options
        return max(opts.min_tokens, math.ceil(seconds * opts.tokens_per_second))

    def _generate(self, encoder_output, prompts: list[list[int]], max_length: int):
        opts = self.options
        max_length = min(MAX_LENGTH, max_length)
        return self.model.model.generate(
            encoder_output,
            prompts,
            beam_size=opts.beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=opts.suppress_blank,
            suppress_tokens=[-1],
            repetition_penalty=opts.repetition_penalty,
            no_repeat_ngram_size=opts.no_repeat_ngram_size,
        )

    def _add_words(
        self,
        hyps: list[Hypothesis],
        tokenizers: list[Tokenizer],
        encoder_output,
        text_tokens: list[list[int]],
        content_frames: list[int],
        skip_tokens: list[int],
    ) -> None:
        todo = [i for i, toks in enumerate(text_tokens) if len(toks) > skip_tokens[i]]
        if not todo:
            return
        # One align call per distinct start sequence (language/task); usually one.
        groups: dict[tuple[int, ...], list[int]] = {}
        for i in todo:
            groups.setdefault(tuple(tokenizers[i].sot_sequence), []).append(i)
        for sot, idx in groups.items():
            if len(idx) == len(hyps):
                enc = encoder_output
            else:
                enc = _select(encoder_output, idx)
            results = self.model.model.align(
                enc,
                list(sot),
                [text_tokens[i] for i in idx],
                [content_frames[i] for i in idx],
                median_filter_width=7,
            )
            for i, res in zip(idx, results, strict=True):
                hyps[i].words = _words_from_alignment(
                    tokenizers[i], text_tokens[i], res, hyps[i].duration, skip_tokens[i]
                )


def _select(encoder_output, rows: list[int]):
    """Rows of a batched encoder output (copied through the host; rare: mixed languages)."""
    import ctranslate2

    array = np.asarray(encoder_output.to_device(ctranslate2.Device.cpu))
    picked = np.ascontiguousarray(array[rows])
    view = ctranslate2.StorageView.from_array(picked)
    if encoder_output.device == "cuda":
        view = view.to_device(ctranslate2.Device.cuda)
    return view


PUNCT_AFTER = set(".。,，!！?？:：;”)]}、\"'»")
PUNCT_BEFORE = set("\"'“¿¡([{-«")


def _words_from_alignment(
    tok: Tokenizer, tokens: list[int], alignment, duration: float, skip_tokens: int = 0
) -> list[DecodedWord]:
    """Turn the token-to-frame alignment path into timed words (punctuation merged).

    Words starting within the first ``skip_tokens`` tokens (a forced prefix) are left out.
    """
    words, word_tokens = tok.split_to_word_tokens([*tokens, tok.eot])
    if len(word_tokens) <= 1:
        return []
    path = alignment.alignments
    if not path:
        return []
    text_idx = np.array([p[0] for p in path])
    time_idx = np.array([p[1] for p in path])
    first_of_token = np.concatenate(([True], np.diff(text_idx) != 0))
    token_times = time_idx[first_of_token] / TOKENS_PER_SECOND
    probs = np.asarray(alignment.text_token_probs, dtype=np.float64)
    bounds = np.concatenate(([0], np.cumsum([len(t) for t in word_tokens[:-1]])))
    raw: list[DecodedWord] = []
    for k, text in enumerate(words[:-1]):  # the last "word" is end-of-text
        a, b = int(bounds[k]), int(bounds[k + 1])
        if a >= len(token_times):
            break
        if a < skip_tokens:
            continue
        start = float(token_times[a])
        end = float(token_times[min(b, len(token_times) - 1)])
        prob = float(np.mean(probs[a:b])) if b > a and len(probs) >= b else 0.0
        raw.append(DecodedWord(text, min(start, duration), min(max(end, start), duration), prob))
    return _merge_punctuation(raw)


def _merge_punctuation(words: list[DecodedWord]) -> list[DecodedWord]:
    out: list[DecodedWord] = []
    carry = ""
    for w in words:
        stripped = w.text.strip()
        if stripped and all(c in PUNCT_AFTER for c in stripped) and out and not carry:
            if not w.text.startswith(" ") or stripped[0] not in PUNCT_BEFORE:
                last = out[-1]
                out[-1] = DecodedWord(last.text + stripped, last.start, last.end, last.probability)
                continue
        if stripped and all(c in PUNCT_BEFORE for c in stripped):
            carry += w.text
            continue
        if not stripped or all(c in string.whitespace for c in w.text):
            continue
        if carry:
            text = carry + w.text.lstrip() if carry.startswith(" ") else carry + w.text
            w = DecodedWord(text, w.start, w.end, w.probability)
            carry = ""
        out.append(w)
    return out
