"""Sequence-to-sequence MT models (Marian/OPUS-MT, NLLB, M2M100) through transformers or
CTranslate2, for hosts that have the weights locally (nothing is downloaded).

How the target language is chosen depends on the model's vocabulary, found at load time:

- ``nllb``: FLORES tokens such as ``spa_Latn``; the source token leads the input and the target
  token is forced as the first generated token;
- ``m2m``: tokens such as ``__es__``, used the same way;
- ``marian-multi``: target tokens such as ``>>spa<<`` or ``>>es<<`` put before the text;
- ``marian``: a model of one direction (OPUS-MT ``opus-mt-en-es``): say which with ``pairs``.

Context is not used (these models translate sentence by sentence).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import langs
from ..errors import BackendFailure, BackendUnavailable, InputRejected
from ._torch import pick_device

log = logging.getLogger(__name__)


def _pair(text: str) -> tuple[str, str]:
    src, sep, tgt = text.partition("-")
    if not sep:
        raise ValueError(f"bad language pair {text!r}: expected SRC-TGT")
    return langs.normalize(src), langs.normalize(tgt)


class Seq2SeqTranslator:
    """A local encoder-decoder MT model behind the Translator interface.

    ``engine``: ``transformers`` or ``ctranslate2`` (``path`` is then a converted CTranslate2
    folder holding the tokenizer files too). ``pairs`` limits or, for one-direction Marian
    models, declares the supported directions (``["en-es"]``).
    """

    fast = False

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "seq2seq",
        pairs: Iterable[str] | None = None,
        engine: str = "transformers",
        device: str = "auto",
        num_beams: int = 1,
        max_new_tokens: int = 256,
        max_input_tokens: int = 512,
        fast: bool | None = None,
    ) -> None:
        self.name = name
        self.path = str(path)
        self.pairs = {_pair(p) for p in pairs} if pairs is not None else None
        self.engine = engine
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.max_input_tokens = max_input_tokens
        self.device = pick_device(device)
        if fast is not None:
            self.fast = fast
        elif self.device == "cuda":
            self.fast = True
        self._lock = threading.Lock()
        self.tokenizer: Any = None
        self.model: Any = None
        self._load()
        self.family = self._detect_family()
        if self.family == "marian" and self.pairs is None:
            raise BackendUnavailable(
                f"{self.path} is a one-direction model: give its direction with pairs=['en-es']"
            )
        log.info("seq2seq %s loaded from %s (%s, %s, %s)", name, self.path, self.family, engine, self.device)

    # --- loading -------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:  # pragma: no cover - transformers is a declared extra
            raise BackendUnavailable("the seq2seq backend needs transformers (pip install s2st[mt])") from exc
        if not Path(self.path).exists():
            hint = "" if "/" not in self.path or Path(self.path).is_absolute() else " (a hub id must be in the local cache)"
            log.debug("%s is not a folder; trying the Hugging Face cache%s", self.path, hint)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            if self.engine == "ctranslate2":
                import ctranslate2

                self.model = ctranslate2.Translator(self.path, device=self.device)
            elif self.engine == "transformers":
                from transformers import AutoModelForSeq2SeqLM

                self.model = AutoModelForSeq2SeqLM.from_pretrained(self.path, local_files_only=True)
                self.model.to(self.device).eval()
            else:
                raise BackendUnavailable(f"unknown seq2seq engine {self.engine!r}")
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"cannot load seq2seq model {self.path}: {exc}") from exc

    def _vocab(self) -> dict[str, int]:
        return dict(self.tokenizer.get_vocab())

    def _detect_family(self) -> str:
        vocab = self._vocab()
        if "eng_Latn" in vocab or "spa_Latn" in vocab:
            return "nllb"
        if "__en__" in vocab or "__es__" in vocab:
            return "m2m"
        if any(t.startswith(">>") and t.endswith("<<") for t in vocab):
            return "marian-multi"
        return "marian"

    # --- language tokens -------------------------------------------------------------------

    def _lang_token(self, lang: str) -> str | None:
        vocab = self._vocab()
        if self.family == "nllb":
            token = langs.FLORES.get(lang)
            return token if token in vocab else None
        if self.family == "m2m":
            token = f"__{lang}__"
            return token if token in vocab else None
        if self.family == "marian-multi":
            three = next((k for k, v in langs._THREE_TO_TWO.items() if v == lang), lang)
            for token in (f">>{lang}<<", f">>{three}<<"):
                if token in vocab:
                    return token
        return None

    def supports(self, src: str, tgt: str) -> bool:
        if src == tgt:
            return False
        if self.pairs is not None and (src, tgt) not in self.pairs:
            return False
        if self.family == "marian":
            return True
        if self.family == "marian-multi":
            return self._lang_token(tgt) is not None
        return self._lang_token(src) is not None and self._lang_token(tgt) is not None

    # --- translation -----------------------------------------------------------------------

    def _input_ids(self, text: str, src: str, tgt: str) -> list[int]:
        tok = self.tokenizer
        if self.family in ("nllb", "m2m"):
            body = tok(text, add_special_tokens=False)["input_ids"]
            src_id = tok.convert_tokens_to_ids(self._lang_token(src))
            ids = [src_id, *body, tok.eos_token_id]
        else:
            if self.family == "marian-multi":
                text = f"{self._lang_token(tgt)} {text}"
            ids = tok(text)["input_ids"]
        if len(ids) > self.max_input_tokens:
            raise InputRejected(
                f"text of {len(ids)} tokens is over the model's limit of {self.max_input_tokens}"
            )
        return list(ids)

    def translate(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> str:
        if not self.supports(src, tgt):
            raise BackendUnavailable(f"{self.name} does not translate {src}-{tgt}")
        text = " ".join(text.split())
        if not text:
            return ""
        ids = self._input_ids(text, src, tgt)
        forced = self._lang_token(tgt) if self.family in ("nllb", "m2m") else None
        try:
            with self._lock:
                if self.engine == "ctranslate2":
                    out_ids = self._generate_ct2(ids, forced)
                else:
                    out_ids = self._generate_hf(ids, forced)
        except (RuntimeError, ValueError) as exc:
            raise BackendFailure(f"{self.name} failed on a text of {len(ids)} tokens: {exc}") from exc
        if forced is not None:  # language tokens are not "special" in every tokenizer
            forced_id = self.tokenizer.convert_tokens_to_ids(forced)
            out_ids = [i for i in out_ids if i != forced_id]
        return " ".join(self.tokenizer.decode(out_ids, skip_special_tokens=True).split())

    def _max_new(self, n_input: int) -> int:
        return min(self.max_new_tokens, 2 * n_input + 10)

    def _generate_hf(self, ids: list[int], forced: str | None) -> list[int]:
        import torch

        kwargs: dict[str, Any] = {
            "max_new_tokens": self._max_new(len(ids)),
            "num_beams": self.num_beams,
            "do_sample": False,
        }
        if forced is not None:
            kwargs["forced_bos_token_id"] = self.tokenizer.convert_tokens_to_ids(forced)
        with torch.inference_mode():
            tensor = torch.tensor([ids], device=self.device)
            output = self.model.generate(
                input_ids=tensor, attention_mask=torch.ones_like(tensor), **kwargs
            )
        return [int(t) for t in output[0]]

    def _generate_ct2(self, ids: list[int], forced: str | None) -> list[int]:
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        result = self.model.translate_batch(
            [tokens],
            target_prefix=[[forced]] if forced else None,
            beam_size=self.num_beams,
            max_decoding_length=self._max_new(len(ids)),
        )
        out_tokens = result[0].hypotheses[0]
        return list(self.tokenizer.convert_tokens_to_ids(out_tokens))

    def close(self) -> None:
        self.model = None
