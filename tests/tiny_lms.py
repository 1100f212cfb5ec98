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


def tiny_clip_mma(lm_layers: int = 2, vision_layers: int = 2, dropout: float = 0.1):
    """A LaVIN-shaped MMA model: a tiny LLaMA (vocab 100) and CLIP tower, both with MM-Adapters, 2 visual tokens."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from vltool.models.mma.build import build_clip_mma
    from vltool.models.mma.inject import AdapterSettings

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=lm_layers,
                                      num_attention_heads=4, num_key_value_heads=2))
    vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=vision_layers,
                                              num_attention_heads=2, image_size=28, patch_size=14))
    return build_clip_mma(lm, vision, AdapterSettings(bottleneck=4, groups=2, dropout=dropout), "attn", visual_tokens=2)
