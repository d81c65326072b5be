"""The LLM and seq2seq backends on tiny random models built offline in a temp folder.

The weights are random, so the words are nonsense: what is checked is loading from a local
folder, the language-token handling, the prompt, the output bound, decoding and the common
interface (through the router too). On a CUDA host the same code loads 4-bit weights.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.mt.tiny_models import build_causal_lm, build_marian
from workers.mt.backends.base import Translator
from workers.mt.backends.llm import LLMTranslator, build_messages, clean_answer
from workers.mt.backends.seq2seq import Seq2SeqTranslator
from workers.mt.config import MTSettings, build_router
from workers.mt.errors import BackendUnavailable, InputRejected, StartupError
from workers.mt.router import Router
from workers.mt.stage import MTStage

pytest.importorskip("torch")

TEXT = "hello everyone , we will meet at the station ."


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "m2m": build_marian(root / "m2m", ["__en__", "__es__", "__ca__"]),
        "nllb": build_marian(root / "nllb", ["eng_Latn", "spa_Latn"]),
        "multi": build_marian(root / "multi", [">>spa<<", ">>cat<<"]),
        "marian": build_marian(root / "marian", []),
        "llm": build_causal_lm(root / "llm"),
        "llm-plain": build_causal_lm(root / "llm-plain", chat_template=None),
    }


@pytest.mark.parametrize(
    ("key", "family", "supported", "unsupported"),
    [
        ("m2m", "m2m", ("en", "ca"), ("en", "de")),
        ("nllb", "nllb", ("en", "es"), ("en", "ca")),
        ("multi", "marian-multi", ("en", "ca"), ("en", "de")),
    ],
)
def test_seq2seq_language_tokens(
    models: dict[str, Path], key: str, family: str, supported: tuple[str, str], unsupported: tuple[str, str]
) -> None:
    mt = Seq2SeqTranslator(models[key], device="cpu", max_new_tokens=12)
    assert isinstance(mt, Translator)
    assert mt.family == family
    assert mt.supports(*supported) and not mt.supports(*unsupported)
    ids = mt._input_ids(TEXT, *supported)
    vocab = mt.tokenizer.get_vocab()
    if family in ("m2m", "nllb"):
        assert ids[0] == vocab[mt._lang_token(supported[0])] and ids[-1] == mt.tokenizer.eos_token_id
    else:
        assert ids[0] == vocab[mt._lang_token(supported[1])]
    out = mt.translate(TEXT, *supported)
    assert isinstance(out, str) and len(out.split()) <= 12
    assert mt._lang_token(supported[1]) not in out.split()
    with pytest.raises(BackendUnavailable):
        mt.translate(TEXT, *unsupported)


def test_one_direction_marian_needs_its_pair(models: dict[str, Path]) -> None:
    with pytest.raises(BackendUnavailable, match="pairs"):
        Seq2SeqTranslator(models["marian"], device="cpu")
    mt = Seq2SeqTranslator(models["marian"], device="cpu", pairs=["en-es"], max_new_tokens=8)
    assert mt.supports("en", "es") and not mt.supports("es", "en")
    first = mt.translate(TEXT, "en", "es")
    assert first and first == mt.translate(TEXT, "en", "es")  # greedy: deterministic
    with pytest.raises(InputRejected, match="tokens"):
        Seq2SeqTranslator(models["marian"], device="cpu", pairs=["en-es"], max_input_tokens=4).translate(
            TEXT, "en", "es"
        )


def test_missing_model_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable):
        Seq2SeqTranslator(tmp_path / "none", device="cpu")
    with pytest.raises(BackendUnavailable):
        LLMTranslator(tmp_path / "none", device="cpu")


def test_llm_prompt_carries_context_and_asks_for_the_translation_only() -> None:
    messages = build_messages("we meet at noon", "en", "es", ["Good morning.", "Welcome."])
    assert messages[0]["role"] == "system" and "Spanish translation only" in messages[0]["content"]
    user = messages[1]["content"]
    assert "Good morning. Welcome." in user and "do not translate" in user
    assert user.endswith("Translate into Spanish: we meet at noon")
    assert "Previous" not in build_messages("x", "en", "es")[1]["content"]


def test_llm_answer_cleaning() -> None:
    assert clean_answer('\n "Nos vemos a mediodía."\nNote: literal', "es") == "Nos vemos a mediodía."
    assert clean_answer("Spanish: Hola", "es") == "Hola"
    assert clean_answer("Translation: Hola a todos", "es") == "Hola a todos"


def test_llm_tiny_model_through_the_interface(models: dict[str, Path]) -> None:
    mt = LLMTranslator(models["llm"], device="cpu", max_new_tokens=10)
    assert isinstance(mt, Translator) and not mt.fast
    prompt = mt.prompt(TEXT, "en", "es", ["good morning ."])
    assert prompt.startswith("<s> system :") and prompt.rstrip().endswith("assistant :")
    assert "good morning ." in prompt
    out = mt.translate(TEXT, "en", "es", ["good morning ."])
    assert isinstance(out, str) and len(out.split()) <= 10 and "\n" not in out
    assert out == mt.translate(TEXT, "en", "es", ["good morning ."])  # greedy
    with pytest.raises(InputRejected, match="tokens"):
        LLMTranslator(models["llm"], device="cpu", max_input_tokens=10).translate(TEXT, "en", "es")


def test_llm_without_chat_template_uses_a_plain_prompt(models: dict[str, Path]) -> None:
    mt = LLMTranslator(models["llm-plain"], device="cpu", max_new_tokens=6, languages=["en", "es"])
    assert mt.prompt("hello", "en", "es").endswith("Translate into Spanish: hello\n\nSpanish:")
    assert not mt.supports("en", "ca")
    assert isinstance(mt.translate("hello", "en", "es"), str)


def test_4bit_needs_cuda_on_a_cpu_host(models: dict[str, Path]) -> None:
    with pytest.raises(BackendUnavailable, match="CUDA"):
        LLMTranslator(models["llm"], device="cpu", quantize="4bit")


@pytest.fixture
def cuda_without_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """This CPU host as a CUDA host without bitsandbytes, as far as the LLM backend can tell
    (torch.cuda.is_available() says yes, ``import bitsandbytes`` fails). Models are not
    loaded: the keyword arguments of each from_pretrained call are returned instead."""
    import torch
    from transformers import AutoModelForCausalLM

    class Loaded:
        def to(self, device: str) -> Loaded:
            return self

        def eval(self) -> Loaded:
            return self

    loads: list[dict[str, Any]] = []

    def from_pretrained(path: Any, **kwargs: Any) -> Loaded:
        loads.append(kwargs)
        return Loaded()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes: ImportError
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    return loads


@pytest.mark.parametrize("quantize", ["auto", "4bit", "8bit"])
def test_quantized_llm_on_cuda_without_bitsandbytes_does_not_load(
    models: dict[str, Path], cuda_without_bitsandbytes: list[dict[str, Any]], quantize: str
) -> None:
    with pytest.raises(BackendUnavailable) as err:
        LLMTranslator(models["llm"], quantize=quantize)  # device "auto": CUDA here
    message = str(err.value)
    assert "bitsandbytes" in message and "pip install 's2st[llm]'" in message
    assert '"quantize": "none"' in message  # how to ask for 16 bits on purpose
    assert cuda_without_bitsandbytes == []  # nothing was loaded, in 16 bits or otherwise


def test_16_bits_on_cuda_only_when_asked(
    models: dict[str, Path], cuda_without_bitsandbytes: list[dict[str, Any]]
) -> None:
    import torch

    mt = LLMTranslator(models["llm"], quantize="none")
    assert mt.device == "cuda"
    [kwargs] = cuda_without_bitsandbytes
    assert kwargs["dtype"] == torch.float16 and "quantization_config" not in kwargs


def test_worker_with_an_unloadable_llm_stops_at_start_naming_the_package(
    models: dict[str, Path], cuda_without_bitsandbytes: list[dict[str, Any]]
) -> None:
    env = {
        "S2ST_MT_BACKENDS": "en-es=big|apertium,*=apertium",
        "S2ST_MT_MODELS": json.dumps({"big": {"kind": "llm", "path": str(models["llm"]),
                                              "quantize": "4bit"}}),
    }
    stage = MTStage(MTSettings.from_env(env))
    with pytest.raises(StartupError) as err:
        asyncio.run(stage.setup())
    assert "'big'" in str(err.value) and "bitsandbytes" in str(err.value)
    assert "S2ST_MT_MODEL_FALLBACK=on" in str(err.value)

    # the opt-in fallback: the worker starts, en-es goes to Apertium, and says so
    stage = MTStage(MTSettings.from_env({**env, "S2ST_MT_MODEL_FALLBACK": "on"}))
    asyncio.run(stage.setup())
    try:
        assert stage.router is not None
        route = stage.router.route("en", "es")
        assert str(route) == "apertium:en-es" and route.unavailable == ("big",)
        health = stage.health()
        assert "bitsandbytes" in health["unavailable"]["big"]
        assert health["fallback"] == {"en-es": "apertium:en-es, instead of big"}
    finally:
        asyncio.run(stage.teardown())
    assert cuda_without_bitsandbytes == []


def test_model_backends_behind_the_router_from_settings(models: dict[str, Path]) -> None:
    settings = MTSettings.from_env({
        "S2ST_MT_BACKENDS": "en-es=tiny_llm,en-ca=tiny_s2s,*=apertium",
        "S2ST_MT_MODELS": (
            f'{{"tiny_llm": {{"kind": "llm", "path": "{models["llm"]}", "device": "cpu", "max_new_tokens": 6}},'
            f' "tiny_s2s": {{"kind": "seq2seq", "path": "{models["m2m"]}", "device": "cpu", "max_new_tokens": 6}}}}'
        ),
    })
    router: Router = build_router(settings)
    try:
        assert router.translate(TEXT, "en", "es").route == "tiny_llm:en-es"
        assert router.translate(TEXT, "en", "ca").route == "tiny_s2s:en-ca"
        assert router.translate("The dog.", "es", "en").route == "apertium:es-en"
        assert not router.route("en", "es").fast
    finally:
        router.close()


def test_ctranslate2_engine(models: dict[str, Path], tmp_path: Path) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    out_dir = tmp_path / "ct2"
    try:
        ctranslate2.converters.TransformersConverter(str(models["m2m"])).convert(str(out_dir))
    except Exception as exc:  # the converter lags behind transformers releases
        pytest.skip(f"CTranslate2 cannot convert with this transformers version: {exc}")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (out_dir / name).write_bytes((models["m2m"] / name).read_bytes())
    mt = Seq2SeqTranslator(out_dir, engine="ctranslate2", device="cpu", max_new_tokens=8)
    assert mt.family == "m2m"
    out = mt.translate(TEXT, "en", "es")
    assert isinstance(out, str) and len(out.split()) <= 8
