"""The visual prompt generator (VPG): what VPGTrans moves from one LLM to another.

VPG = frozen ViT + ``ln_vision`` + Q-Former + learned query tokens, built from transformers'
``Blip2VisionModel`` and ``Blip2QFormerModel`` (LAVIS's ``ln_vision`` is the vision model's
``post_layernorm``, as in transformers' own conversion). Its output is the Q-Former's
``[B, num_query_tokens, qformer_width]`` hidden states; the projector to an LLM's width is not
part of the VPG, because that is the piece every target LLM needs anew.

Two things here differ from calling the transformers modules naively:
- the frozen ViT runs without autograd even when ``ln_vision`` trains (stage 2), so ViT-g's
  activations are never kept for a backward pass that cannot reach its weights;
- a VPG built from scratch is initialised like LAVIS: ``initializer_range`` 0.02 (transformers'
  ``Blip2VisionConfig`` defaults to 1e-10, which leaves a fresh ViT almost constant) and query
  tokens ~ normal(0, 0.02) (transformers starts them at zero).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel, Blip2VisionConfig, Blip2VisionModel

LAVIS_INIT_STD = 0.02


class VisualPromptGenerator(nn.Module):
    """ViT + ln_vision + Q-Former + query tokens; ``forward(pixel_values) -> [B, Q, d_qformer]``."""

    def __init__(self, vision_model: Blip2VisionModel, qformer: Blip2QFormerModel,
                 query_tokens: torch.Tensor) -> None:
        super().__init__()
        if query_tokens.dim() != 3 or query_tokens.shape[0] != 1:
            raise ValueError(f"query_tokens must be [1, Q, d], got {list(query_tokens.shape)}")
        if query_tokens.shape[-1] != qformer.config.hidden_size:
            raise ValueError(f"query_tokens width {query_tokens.shape[-1]} != Q-Former width "
                             f"{qformer.config.hidden_size}")
        if qformer.config.encoder_hidden_size != vision_model.config.hidden_size:
            raise ValueError(f"Q-Former cross-attends to width {qformer.config.encoder_hidden_size} but the ViT is "
                             f"{vision_model.config.hidden_size} wide")
        self.vision_model = vision_model
        self.qformer = qformer
        self.query_tokens = nn.Parameter(query_tokens.detach().clone())

    @property
    def ln_vision(self) -> nn.LayerNorm:
        return self.vision_model.post_layernorm

    @property
    def num_query_tokens(self) -> int:
        return self.query_tokens.shape[1]

    @property
    def width(self) -> int:
        """The Q-Former width: what the projector maps from."""
        return self.qformer.config.hidden_size

    @classmethod
    def from_configs(cls, vision_config: Blip2VisionConfig | dict[str, Any],
                     qformer_config: Blip2QFormerConfig | dict[str, Any], num_query_tokens: int,
                     seed: int | None = None) -> VisualPromptGenerator:
        """A freshly initialised VPG with LAVIS's init (see module docstring)."""
        vision = _config(Blip2VisionConfig, vision_config)
        qformer = _config(Blip2QFormerConfig, qformer_config)
        if seed is not None:
            torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
        queries = torch.randn(1, num_query_tokens, qformer.hidden_size, generator=generator) * LAVIS_INIT_STD
        return cls(Blip2VisionModel(vision), Blip2QFormerModel(qformer), queries)

    def vit_trainable(self) -> bool:
        return any(p.requires_grad for name, p in self.vision_model.named_parameters()
                   if not name.startswith("post_layernorm."))

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ViT patch features after ln_vision: what the Q-Former cross-attends to."""
        vision = self.vision_model
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.vit_trainable()):
            hidden = vision.embeddings(pixel_values.to(vision.embeddings.patch_embedding.weight.dtype))
            hidden = vision.encoder(inputs_embeds=hidden).last_hidden_state
        return vision.post_layernorm(hidden)

    def query_output(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Q-Former outputs for given ViT features (the same call Blip2ForConditionalGeneration makes)."""
        mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        return self.qformer(query_embeds=queries, encoder_hidden_states=image_embeds,
                            encoder_attention_mask=mask).last_hidden_state

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.query_output(self.image_embeds(pixel_values))


def _config(cls: type, value: Any) -> Any:
    data = value.to_dict() if hasattr(value, "to_dict") else dict(value)
    data["initializer_range"] = LAVIS_INIT_STD
    data.pop("model_type", None)
    data.pop("transformers_version", None)
    return cls(**data)
