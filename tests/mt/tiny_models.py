"""Tiny randomly initialised models and tokenizers built offline, for the model backends' tests.

The weights are random, so the output is nonsense; what the tests check is that loading,
prompting, language tokens, length bounds and decoding work through the real code paths.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "the a cat dog house is on in and we you I hello good morning everyone station meet "
    "will at today tomorrow el la gato perro casa es en y nosotros hola buenos días todos "
    "estación . , ? ! : translate English Spanish Catalan from to into text previous"
).split()


def build_tokenizer(
    folder: Path, extra_tokens: list[str], chat_template: str | None = None, pad_last: bool = False
):
    """A whitespace word-level fast tokenizer saved to ``folder`` (no download, no training).

    ``pad_last`` puts ``<pad>`` at the end of the vocabulary, as Marian models have it.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["</s>", "<unk>", "<s>"]
    tokens = [*specials, *extra_tokens, *WORDS]
    tokens = [*tokens, "<pad>"] if pad_last else ["<pad>", *tokens]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>",
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_marian(folder: Path, lang_tokens: list[str]) -> Path:
    """A 1-layer Marian encoder-decoder with a word-level vocabulary, saved to ``folder``."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    tokenizer = build_tokenizer(folder, lang_tokens, pad_last=True)
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(tokenizer),
        decoder_vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    MarianMTModel(config).save_pretrained(folder)
    return folder


CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)


def build_causal_lm(folder: Path, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    """A 1-layer Llama-style causal LM with a word-level vocabulary (and a chat template)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(folder, ["system", "user", "assistant"], chat_template)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
