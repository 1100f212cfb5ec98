"""LaVIN-7B's architecture at real scale, for ``--dry-run`` on the meta device (no weights).

LLaMA-7B (4096 wide, 32 layers, 32 heads, FFN 11008, vocabulary 32000) and CLIP ViT-L/14
(1024 wide, 24 blocks, 16 heads, FFN 4096, patch 14, 224 px) come from the architecture JSON
that ships with the alias registry (``vltool/sources/arch``), so there is one source of truth.
Known answer: with ``attn`` adapters of width 8 in every LLM layer and CLIP block and 6 visual
tokens, exactly 3,781,296 parameters train.
"""

from __future__ import annotations

import torch

from vltool.models.meta_count import arch, text_config
from vltool.models.mma.build import build_clip_mma
from vltool.models.mma.inject import AdapterSettings
from vltool.models.mma.mma_model import MMAModel

LAVIN_7B_TRAINABLE = 3_781_296


def llama7b_config():
    """transformers LlamaConfig of LLaMA-7B."""
    return text_config(arch("llama-7b")["text"])


def clip_vit_l14_config():
    """transformers CLIPVisionConfig of CLIP ViT-L/14 at 224 px."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(**arch("clip-vit-l14")["vision"])


def meta_clip_mma(lm_config, vision_config, settings: AdapterSettings | None = None, placement: str = "attn",
                  visual_tokens: int = 6, vision_adapters: bool = True) -> MMAModel:
    """A CLIP-front-end MMA model on the meta device: every shape, no memory."""
    from transformers import AutoModelForCausalLM, CLIPVisionModel

    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(lm_config)
        vision = CLIPVisionModel(vision_config)
        return build_clip_mma(lm, vision, settings or AdapterSettings(), placement, visual_tokens, vision_adapters)


def meta_lavin7b(placement: str = "attn") -> MMAModel:
    """LaVIN-7B (LLaMA-7B + CLIP ViT-L/14, adapter width 8, 6 visual tokens) on the meta device."""
    return meta_clip_mma(llama7b_config(), clip_vit_l14_config(), AdapterSettings(), placement)
