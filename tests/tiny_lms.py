"""Tiny transformers LMs from configs, shared by the MM-Adapter tests (no weights on disk)."""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM


def tiny_llama(kv_heads: int = 2) -> LlamaForCausalLM:
    """2 layers, width 32, grouped-query attention unless ``kv_heads`` is 4."""
    return LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=kv_heads, intermediate_size=64, pad_token_id=0))


def tiny_opt() -> OPTForCausalLM:
    return OPTForCausalLM(OPTConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    ffn_dim=64, word_embed_proj_dim=32, pad_token_id=1))
