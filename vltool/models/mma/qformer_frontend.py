"""The Q-Former visual front end: BLIP-2's VPG + projector in front of the adapted LLM.

This is the card's pipeline (VPGTrans first, then MMA): the visual tokens are the Q-Former's
query outputs through the projector (``language_projection``), taken from a vltool ``vpg``
artifact or an HF BLIP-2 folder. Any module with this signature (pixel_values -> [B, n, d_llm],
a ``visual_tokens`` attribute, the trainable projection under ``projector``) plugs into MMAModel.
"""

from __future__ import annotations

import torch
from torch import nn


class QFormerFrontEnd(nn.Module):
    """BLIP-2's ViT + Q-Former + query tokens + projector: images -> [B, Q, d_llm] visual tokens."""

    def __init__(self, blip2) -> None:
        super().__init__()
        self.vision_model = blip2.vision_model
        self.qformer = blip2.qformer
        self.query_tokens = blip2.query_tokens
        self.projector = blip2.language_projection

    @property
    def visual_tokens(self) -> int:
        return self.query_tokens.shape[1]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vision_model.parameters()).dtype
        image = self.vision_model(pixel_values=pixel_values.to(dtype)).last_hidden_state
        mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        queries = self.query_tokens.expand(image.shape[0], -1, -1)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=image, encoder_attention_mask=mask)
        hidden = out.last_hidden_state
        return self.projector(hidden.to(self.projector.weight.dtype))
