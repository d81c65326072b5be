"""Quality scores, normalized the way the field normalizes them.

- **WER**: corpus word error rate (total edits over total reference words, jiwer) after
  Whisper's text normalizer on both sides: ``EnglishTextNormalizer`` for English (spelling,
  numbers, contractions), ``BasicTextNormalizer`` for other languages (the normalizers of the
  Whisper paper, Appendix C, from the ``whisper-normalizer`` package). The normalizers delete
  text in brackets (meant for "(laughs)"); in a *reference* transcript such as FLEURS' the
  bracketed words were read aloud, so a reference loses only the bracket characters first.
- **BLEU** and **chrF**: sacrebleu corpus scores of the committed translation text against the
  reference translations, sacrebleu's defaults (13a tokenization, cased, punctuation kept), as
  SimulEval's BLEU scorer.
- **ASR-BLEU**: the translated *speech* transcribed back with Whisper base (multilingual), the
  target language forced, then sacrebleu 13a; transcripts and references are both lowercased
  and stripped of punctuation (SimulEval's ``WHISPER_ASR_BLEU`` with
  ``--transcript-lowercase --transcript-non-punctuation``, applied to the references too so
  the two sides compare like with like). The same decoding also gives each word's time
  (``word_timestamps``: faster-whisper's cross-attention alignment), which times the output
  words for the latency figures (latency.py).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

# SimulEval's punctuation sets (quality_scorer.py): dashes and slashes become spaces
_PUNCT_TO_SPACE = "-/–·—•"
_PUNCT_DROP = string.punctuation.replace("'", "") + "¡¨«°³º»¿‘“”…♪♫ˆᵉ™，ʾ˚"
_TO_SPACE = str.maketrans(_PUNCT_TO_SPACE, " " * len(_PUNCT_TO_SPACE))
_DROP = str.maketrans("", "", _PUNCT_DROP)
_BRACKETS = str.maketrans("()[]", "    ")


@cache
def _normalizer(english: bool) -> Any:
    if english:
        from whisper_normalizer.english import EnglishTextNormalizer

        return EnglishTextNormalizer()
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


def normalize_for_wer(text: str, lang: str) -> str:
    return " ".join(str(_normalizer(lang.split("-")[0] == "en")(text)).split())


def wer_counts(reference: str, hypothesis: str, lang: str) -> tuple[int, int]:
    """(word edits, reference words) after normalization; corpus WER is the ratio of sums."""
    import jiwer

    ref = normalize_for_wer(reference.translate(_BRACKETS), lang)
    hyp = normalize_for_wer(hypothesis, lang)
    words = len(ref.split())
    if not words:
        return 0, 0
    if not hyp:
        return words, words
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, words


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    from sacrebleu.metrics import BLEU

    return float(BLEU().corpus_score(list(hypotheses), [list(references)]).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    from sacrebleu.metrics import CHRF

    return float(CHRF().corpus_score(list(hypotheses), [list(references)]).score)


def normalize_for_asr_bleu(text: str) -> str:
    return " ".join(text.lower().translate(_TO_SPACE).translate(_DROP).split())


def asr_bleu(transcripts: Sequence[str], references: Sequence[str]) -> float:
    return bleu([normalize_for_asr_bleu(t) for t in transcripts],
                [normalize_for_asr_bleu(r) for r in references])


@dataclass(frozen=True)
class Heard:
    """Speech transcribed back: the text, and each word with its start and end (s) in the
    audio transcribed."""

    text: str
    words: tuple[tuple[str, float, float], ...] = ()


class BackTranscriber:
    """Whisper base (multilingual, from the installed packages) for ASR-BLEU."""

    def __init__(self, model: str = "base", *, threads: int | None = None) -> None:
        from workers.asr.models import load_model

        self.name = model
        self.model = load_model(model, device="cpu", cpu_threads=threads,
                                allow_download=False)

    def transcribe(self, audio: np.ndarray, lang: str) -> str:
        """``audio``: float32 mono 16 kHz."""
        if not len(audio):
            return ""
        segments, _info = self.model.transcribe(audio.astype(np.float32), language=lang,
                                                beam_size=5, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()

    def hear(self, audio: np.ndarray, lang: str) -> Heard:
        """The transcript, as :meth:`transcribe`, with the words' times."""
        if not len(audio):
            return Heard("")
        segments, _info = self.model.transcribe(audio.astype(np.float32), language=lang,
                                                beam_size=5, vad_filter=False,
                                                word_timestamps=True)
        texts: list[str] = []
        words: list[tuple[str, float, float]] = []
        for s in segments:
            texts.append(s.text.strip())
            words += [(w.word.strip(), float(w.start), float(w.end)) for w in s.words or ()
                      if w.word.strip()]
        return Heard(" ".join(texts).strip(), tuple(words))
