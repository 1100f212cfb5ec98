"""Tiny BLIP-2 parts for the model and source tests: the same Blip2ForConditionalGeneration the stages train."""

from __future__ import annotations

import torch
from tiny_tokenizer import word_tokenizer
from transformers import (
    Blip2QFormerConfig,
    Blip2QFormerModel,
    Blip2VisionConfig,
    Blip2VisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

from vltool.models import vlm
from vltool.sources.hf_blip2 import ensure_image_token

Q = 4
IMAGE = 28


def vision_config(layers: int = 1) -> Blip2VisionConfig:
    return Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
                             image_size=IMAGE, patch_size=14, initializer_range=0.02)


def qformer_config(frequency: int = 2) -> Blip2QFormerConfig:
    return Blip2QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              encoder_hidden_size=32, cross_attention_frequency=frequency, max_position_embeddings=64,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_opt(vocab: int, seed: int = 0, width: int = 48) -> OPTForCausalLM:
    torch.manual_seed(seed)
    return OPTForCausalLM(OPTConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=2, ffn_dim=64,
                                    num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=width,
                                    dropout=0.0, attention_dropout=0.0, pad_token_id=0, bos_token_id=1,
                                    eos_token_id=2)).eval()


def tiny_llama(vocab: int, seed: int = 0, width: int = 40) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                        pad_token_id=0, bos_token_id=1, eos_token_id=2)).eval()


def tiny_model(family: str = "opt", seed: int = 0):
    """(Blip2ForConditionalGeneration with random VPG parts, its word tokenizer with ``<image>``)."""
    tokenizer = word_tokenizer()
    lm = tiny_opt(len(tokenizer) + 3, seed) if family == "opt" else tiny_llama(len(tokenizer), seed)
    image_token = ensure_image_token(tokenizer, lm)
    torch.manual_seed(seed)
    vision, qformer = Blip2VisionModel(vision_config()), Blip2QFormerModel(qformer_config())
    queries = torch.randn(1, Q, 32) * 0.02
    projector = torch.nn.Linear(32, lm.config.hidden_size)
    return vlm.assemble(vision, qformer, queries, projector, lm, image_token).eval(), tokenizer


def pixels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))
