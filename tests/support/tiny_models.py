"""Every tiny model and tokenizer the tests build, from configs, in one place (no weights on disk).

Two LM shapes are in use and kept apart on purpose, because tests assert numbers that depend on them:
- ``tiny_opt`` / ``tiny_llama``: the LMs of the tiny BLIP-2 (``tiny_model``), seeded, in eval mode, no
  dropout, ids pad 0 / bos 1 / eos 2 as the word tokenizer numbers them;
- ``mma_opt`` / ``mma_llama``: the LaVIN-shaped MM-Adapter tests' LMs (vocabulary 40, width 32, 4 heads,
  transformers' default dropout), unseeded: the caller seeds.
Anything else a test needs is ``opt_lm`` / ``llama_lm`` / ``tiny_clip`` with the config keys it asserts on.
Real hub layouts (file names, config ids of the published repositories) live in ``real_layouts.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    Blip2QFormerConfig,
    Blip2QFormerModel,
    Blip2VisionConfig,
    Blip2VisionModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedTokenizerFast,
)

Q = 4  # query tokens of the tiny BLIP-2
IMAGE = 28  # its image side (two 14-pixel patches)
WORDS = ["a", "the", "red", "blue", "green", "circle", "square", "big", "small", "on", "left", "right", "question",
         "answer", "is", ":", "?", "."]


# ----- tokenizers -------------------------------------------------------------------------------
def word_tokenizer(extra: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer built in memory: <pad> <s> </s> <unk> at 0-3, then ``WORDS`` and ``extra``."""
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS, *(extra or [])])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def llama_tokenizer_folder(folder: Path, texts: list[str]) -> Path:
    """A tokenizer.model-only LLaMA folder whose model also keeps LLaMA's ``identity`` normalisation
    ("\\n" stays a byte piece, <0x0A>; sentencepiece's default would turn it into a space)."""
    import io

    import sentencepiece as spm

    from support.real_layouts import sentencepiece_files

    sentencepiece_files(folder)  # the configs of a LLaMA / Vicuna folder
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts * 3), model_writer=model, vocab_size=400, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
        add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=True, hard_vocab_limit=False,
        normalization_rule_name="identity", minloglevel=2)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    return folder


# ----- language models --------------------------------------------------------------------------
def opt_lm(vocab: int, width: int, heads: int, *, layers: int = 2, ffn: int = 64, seed: int | None = None,
           **config: Any) -> OPTForCausalLM:
    """OPTForCausalLM from its config (word embeddings as wide as the decoder unless ``config`` says)."""
    if seed is not None:
        torch.manual_seed(seed)
    config = {"word_embed_proj_dim": width, **config}
    return OPTForCausalLM(OPTConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, ffn_dim=ffn,
                                    num_attention_heads=heads, **config))


def llama_lm(vocab: int, width: int, heads: int, *, layers: int = 2, ffn: int = 64, kv_heads: int | None = None,
             seed: int | None = None, **config: Any) -> LlamaForCausalLM:
    """LlamaForCausalLM from its config (``kv_heads`` below ``heads``: grouped-query attention)."""
    if seed is not None:
        torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=ffn,
                                        num_hidden_layers=layers, num_attention_heads=heads,
                                        num_key_value_heads=kv_heads or heads, **config))


BLIP2_LM = {"max_position_embeddings": 64, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def tiny_opt(vocab: int, seed: int = 0, width: int = 48, **config: Any) -> OPTForCausalLM:
    """The tiny BLIP-2's OPT: 2 layers, 2 heads, no dropout, eval mode."""
    config = {**BLIP2_LM, "dropout": 0.0, "attention_dropout": 0.0, **config}
    return opt_lm(vocab, width, 2, seed=seed, **config).eval()


def tiny_llama(vocab: int, seed: int = 0, width: int = 40) -> LlamaForCausalLM:
    """The tiny BLIP-2's LLaMA: 2 layers, 2 heads, eval mode."""
    return llama_lm(vocab, width, 2, seed=seed, **BLIP2_LM).eval()


def mma_opt() -> OPTForCausalLM:
    """The MM-Adapter tests' OPT: vocabulary 40, width 32, 4 heads, 2 layers."""
    return opt_lm(40, 32, 4, pad_token_id=1)


def mma_llama(kv_heads: int = 2) -> LlamaForCausalLM:
    """The MM-Adapter tests' LLaMA: vocabulary 40, width 32, 4 heads, grouped-query attention unless ``kv_heads`` is 4."""
    return llama_lm(40, 32, 4, kv_heads=kv_heads, pad_token_id=0)


# ----- vision towers and whole models -------------------------------------------------------------
def tiny_clip(layers: int = 4) -> CLIPVisionModel:
    """A CLIP vision tower on 28-pixel images (4 patches + [CLS]), width 32, eval mode."""
    return CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                            num_attention_heads=4, image_size=28, patch_size=14)).eval()


def vision_config(layers: int = 1) -> Blip2VisionConfig:
    return Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
                             image_size=IMAGE, patch_size=14, initializer_range=0.02)


def qformer_config(frequency: int = 2) -> Blip2QFormerConfig:
    return Blip2QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              encoder_hidden_size=32, cross_attention_frequency=frequency, max_position_embeddings=64,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_model(family: str = "opt", seed: int = 0):
    """(Blip2ForConditionalGeneration with random VPG parts, its word tokenizer with ``<image>``)."""
    from vltool.models import vlm
    from vltool.sources.hf_blip2 import ensure_image_token

    tokenizer = word_tokenizer()
    lm = tiny_opt(len(tokenizer) + 3, seed) if family == "opt" else tiny_llama(len(tokenizer), seed)
    image_token = ensure_image_token(tokenizer, lm)
    torch.manual_seed(seed)
    vision, qformer = Blip2VisionModel(vision_config()), Blip2QFormerModel(qformer_config())
    queries = torch.randn(1, Q, 32) * 0.02
    projector = torch.nn.Linear(32, lm.config.hidden_size)
    return vlm.assemble(vision, qformer, queries, projector, lm, image_token).eval(), tokenizer


def tiny_clip_mma(lm_layers: int = 2, vision_layers: int = 2, dropout: float = 0.1):
    """A LaVIN-shaped MMA model: a tiny LLaMA (vocab 100) and CLIP tower, both with MM-Adapters, 2 visual tokens."""
    from vltool.models.mma.build import build_clip_mma
    from vltool.models.mma.inject import AdapterSettings

    torch.manual_seed(0)
    lm = llama_lm(100, 32, 4, layers=lm_layers, ffn=48, kv_heads=2)
    vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=vision_layers,
                                              num_attention_heads=2, image_size=28, patch_size=14))
    return build_clip_mma(lm, vision, AdapterSettings(bottleneck=4, groups=2, dropout=dropout), "attn", visual_tokens=2)


def pixels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))
