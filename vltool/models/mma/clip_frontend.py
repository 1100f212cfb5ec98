"""LaVIN's own visual front end: CLIP ViT-L/14, the [CLS] token after every 4th block, an MLP.

LaVIN feeds the LLM six visual tokens per image: the raw [CLS] hidden state after blocks 4, 8,
..., 24 of CLIP ViT-L/14 (no final LayerNorm, no CLIP projection), each mapped by
Linear(1024 -> 128), SiLU, Linear(128 -> d). The ViT is transformers' ``CLIPVisionModel``,
frozen except the MM-Adapters that ``inject_vision`` puts after each block's ``layer_norm1``.
With ``visual_tokens`` = n the [CLS] is taken after every (layers / n)-th block.
"""

from __future__ import annotations

import torch
from torch import nn

from vltool.errors import UserError


def visual_projection(vision_width: int, llm_width: int, hidden: int = 128) -> nn.Sequential:
    """LaVIN's projection MLP; xavier-uniform weights and zero biases, as LaVIN initialises it."""
    mlp = nn.Sequential(nn.Linear(vision_width, hidden), nn.SiLU(), nn.Linear(hidden, llm_width))
    for layer in (mlp[0], mlp[2]):
        if not layer.weight.is_meta:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return mlp


class ClipFrontEnd(nn.Module):
    """pixel_values [B, 3, H, W] -> [B, visual_tokens, d_llm] visual tokens."""

    def __init__(self, vision: nn.Module, llm_width: int, visual_tokens: int = 6, hidden: int = 128) -> None:
        super().__init__()
        layers = vision.config.num_hidden_layers
        if visual_tokens < 1 or layers % visual_tokens:
            raise UserError(f"visual_tokens={visual_tokens} must divide the vision encoder's {layers} blocks "
                            f"(LaVIN: 6 tokens from 24 blocks, one [CLS] after every 4th)")
        self.vision = vision
        self.every = layers // visual_tokens
        self.projector = visual_projection(vision.config.hidden_size, llm_width, hidden)

    @property
    def visual_tokens(self) -> int:
        return self.vision.config.num_hidden_layers // self.every

    def cls_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, visual_tokens, d_vision]: the [CLS] state after every ``every``-th block."""
        dtype = next(self.vision.parameters()).dtype
        out = self.vision(pixel_values=pixel_values.to(dtype), output_hidden_states=True)
        states = out.hidden_states  # (embeddings after pre-LN, block 1, ..., block L)
        picks = range(self.every, len(states), self.every)
        return torch.stack([states[k][:, 0] for k in picks], dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        cls = self.cls_tokens(pixel_values)
        return self.projector(cls.to(self.projector[0].weight.dtype))
