"""Translation with an instruction-tuned causal LLM through transformers.

The seed design is a 7B instruct model (Mistral-7B-Instruct) loaded 4-bit with bitsandbytes on
CUDA (the ``llm`` extra; without it the backend does not load: it never falls back to 16 bits
on its own); on a CPU host any causal LM loads in float32 (slowly: only small models make sense
there).
Weights come from a local folder or the Hugging Face cache, never a download.

The prompt gives the model the previous source sentences as context and asks for the
translation of the new sentence only; decoding is greedy with an output bound proportional
to the input, and the answer is cleaned to its first line, without quotes or a label.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import langs
from ..errors import BackendFailure, BackendUnavailable, InputRejected
from ._torch import pick_device

log = logging.getLogger(__name__)

QUANTIZE_MODES = ("auto", "4bit", "8bit", "none")
LLM_EXTRA = "pip install 's2st[llm]'"  # bitsandbytes and accelerate (CUDA hosts only)

SYSTEM_PROMPT = (
    "You are a professional simultaneous interpreter. Translate the text you are given "
    "from {src} into {tgt}. Reply with the {tgt} translation only: no notes, no quotes, "
    "no explanations."
)


def build_messages(text: str, src: str, tgt: str, context: Sequence[str] = ()) -> list[dict[str, str]]:
    """The chat messages for one translation; ``context`` is earlier source sentences."""
    src_name, tgt_name = langs.name(src), langs.name(tgt)
    parts: list[str] = []
    if context:
        previous = " ".join(" ".join(c.split()) for c in context)
        parts.append(f"Previous {src_name} sentences, for context only (do not translate): {previous}")
    parts.append(f"Translate into {tgt_name}: {' '.join(text.split())}")
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(src=src_name, tgt=tgt_name)},
        {"role": "user", "content": "\n".join(parts)},
    ]


def plain_prompt(messages: list[dict[str, str]], tgt: str) -> str:
    """A prompt for models without a chat template."""
    body = "\n\n".join(m["content"] for m in messages)
    return f"{body}\n\n{langs.name(tgt)}:"


_LABEL = re.compile(r"^\s*(?:translation|traducción|traducció|[A-Z][a-z]+ translation)\s*:\s*", re.I)


def clean_answer(answer: str, tgt: str) -> str:
    """The first non-empty line, without a leading language label or surrounding quotes."""
    line = next((ln.strip() for ln in answer.splitlines() if ln.strip()), "")
    line = _LABEL.sub("", line)
    label = f"{langs.name(tgt)}:"
    if line.lower().startswith(label.lower()):
        line = line[len(label):].strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'«“":
        line = line[1:-1].strip()
    return " ".join(line.split())


class LLMTranslator:
    """A causal LLM behind the Translator interface.

    ``quantize``: ``auto`` (4-bit on CUDA, none on a CPU), ``4bit``, ``8bit`` (CUDA and the
    ``llm`` extra, else :class:`BackendUnavailable` naming what is missing) or ``none``. ``languages`` limits the pairs (all pairs of these languages); without it
    every pair of two different languages is accepted.
    """

    fast = False

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "llm",
        device: str = "auto",
        quantize: str = "auto",
        languages: Iterable[str] | None = None,
        max_new_tokens: int = 256,
        max_input_tokens: int = 2048,
        temperature: float = 0.0,
    ) -> None:
        self.name = name
        self.path = str(path)
        self.device = pick_device(device)
        self.languages = {langs.normalize(x) for x in languages} if languages is not None else None
        self.max_new_tokens = max_new_tokens
        self.max_input_tokens = max_input_tokens
        self.temperature = temperature
        self.quantize = quantize
        self._lock = threading.Lock()
        self.tokenizer: Any = None
        self.model: Any = None
        self._load()

    def _quantization_config(self) -> Any:
        """The bitsandbytes config of ``quantize`` on this device, or None for full weights.

        ``auto`` is 4-bit on CUDA and none on a CPU. A quantization that cannot be had is an
        error naming what is missing, never a silent load in 16 bits (a 7B model that fits
        a GPU in 4 bits may not in 16): ``quantize: "none"`` asks for 16 bits explicitly.
        """
        mode = self.quantize
        if mode not in QUANTIZE_MODES:
            raise BackendUnavailable(
                f"unknown quantization {mode!r}: use {', '.join(QUANTIZE_MODES)}")
        if mode == "auto":
            mode = "4bit" if self.device == "cuda" else "none"
        if mode == "none":
            return None
        if self.device != "cuda":
            raise BackendUnavailable(
                f"{mode} quantization needs a CUDA device (device is {self.device}); "
                f"use \"quantize\": \"none\" on a CPU")
        for package in ("bitsandbytes", "accelerate"):
            try:
                importlib.import_module(package)
            except Exception as exc:  # ImportError, or a broken CUDA set-up at import
                raise BackendUnavailable(
                    f"{self.name}: quantize={self.quantize!r} loads {self.path} {mode} on CUDA "
                    f"through {package}, which cannot be imported ({type(exc).__name__}: "
                    f"{exc}): install the llm extra, {LLM_EXTRA}, or set \"quantize\": "
                    f"\"none\" to load it in 16 bits") from exc
        import torch
        from transformers import BitsAndBytesConfig

        if mode == "4bit":
            return BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.float16,
                bnb_4bit_use_double_quant=True,
            )
        return BitsAndBytesConfig(load_in_8bit=True)

    def _load(self) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover
            raise BackendUnavailable(
                f"the LLM backend needs torch and transformers ({exc}): install torch (pinned) "
                f"first, then {LLM_EXTRA} on a CUDA host or pip install 's2st[mt]' on a CPU"
            ) from exc
        quantization = self._quantization_config()
        kwargs: dict[str, Any] = {"local_files_only": True}
        if quantization is not None:
            kwargs["quantization_config"] = quantization
            kwargs["device_map"] = {"": 0}
        elif self.device == "cuda":
            kwargs["dtype"] = torch.float16
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(self.path, **kwargs)  # type: ignore[no-untyped-call]
        except (OSError, ValueError, ImportError) as exc:
            raise BackendUnavailable(
                f"cannot load LLM {self.path} (a local folder, or a model already in the Hugging "
                f"Face cache, HF_HOME: nothing is downloaded): {exc}") from exc
        if quantization is None:
            self.model.to(self.device)
        self.model.eval()
        log.info("llm %s loaded from %s on %s (quantization %s)", self.name, self.path, self.device,
                 "none" if quantization is None else self.quantize)

    def supports(self, src: str, tgt: str) -> bool:
        if src == tgt:
            return False
        return self.languages is None or (src in self.languages and tgt in self.languages)

    def prompt(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> str:
        messages = build_messages(text, src, tgt, context)
        if getattr(self.tokenizer, "chat_template", None):
            return str(
                self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        return plain_prompt(messages, tgt)

    def translate(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> str:
        import torch

        if not self.supports(src, tgt):
            raise BackendUnavailable(f"{self.name} does not translate {src}-{tgt}")
        if not text.strip():
            return ""
        prompt = self.prompt(text, src, tgt, context)
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        n_prompt = int(encoded["input_ids"].shape[1])
        if n_prompt > self.max_input_tokens:
            raise InputRejected(f"prompt of {n_prompt} tokens is over the limit of {self.max_input_tokens}")
        n_text = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        kwargs: dict[str, Any] = {
            "max_new_tokens": min(self.max_new_tokens, 2 * n_text + 16),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature)
        else:
            kwargs["do_sample"] = False
        try:
            with self._lock, torch.inference_mode():
                encoded = {k: v.to(self.model.device) for k, v in encoded.items()}
                output = self.model.generate(**encoded, **kwargs)
        except (RuntimeError, ValueError) as exc:
            raise BackendFailure(f"{self.name} failed on a prompt of {n_prompt} tokens: {exc}") from exc
        answer = self.tokenizer.decode(output[0, n_prompt:], skip_special_tokens=True)
        return clean_answer(answer, tgt)

    def close(self) -> None:
        self.model = None
