"""The assembled multimodal LM: VPG -> projector -> any transformers causal LM (OPT, LLaMA, ...).

Sequence layout, as BLIP-2 / VPGTrans train it: ``[Q projected query embeddings][BOS] prompt
caption``; the caller's ``input_ids`` are the text part only (BOS included, as the tokenizer adds
it) and the model puts the visual embeddings in front. The loss is the LM's own causal loss on
the caption: ``labels`` cover the text (-100 on prompt and padding) and the visual positions get
-100 here. With left-padded text (generation) the padding moves in front of the visual tokens,
so every row reads ``[pads][visual][BOS] prompt`` and positions count from the first real token.

Why not train ``Blip2ForConditionalGeneration`` directly: it needs ``num_query_tokens`` copies of
an image placeholder in every prompt and silently ignores the image when they are missing, and
it cannot start from cached Q-Former outputs. This module keeps the placeholder out of training
and exports to that class only at the end (``to_blip2`` / ``save_blip2``), where the image token
is set in the config and the tokenizer, so plain transformers gives the same logits.

Feature cache: in the warm-up only the projector trains, so ``encode_images`` (the frozen VPG's
output) can be computed once per image and passed back as ``forward(query_output=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.models.vpg import VisualPromptGenerator
from vltool.sources.hf_blip2 import Blip2Parts, assemble_blip2, save_blip2_folder
from vltool.sources.hf_blip2 import ensure_image_token as _ensure_image_token

IGNORE_INDEX = -100
WARMUP_PARTS = ("projector",)
TRANSFER_PARTS = ("ln_vision", "qformer", "query_tokens", "projector")
PARTS = ("vit", "ln_vision", "qformer", "query_tokens", "projector", "llm")


def lm_embedding_width(language_model: nn.Module) -> int:
    """The width the LM's input embeddings have: what the projector must output."""
    return language_model.get_input_embeddings().embedding_dim


class VisionLanguageModel(nn.Module):
    """VPG + projector + causal LM (see module docstring)."""

    def __init__(self, vpg: VisualPromptGenerator, projector: nn.Linear, language_model: nn.Module,
                 image_token_index: int | None = None) -> None:
        super().__init__()
        if projector.in_features != vpg.width:
            raise ValueError(f"projector takes {projector.in_features} features but the Q-Former is {vpg.width} wide")
        if projector.out_features != lm_embedding_width(language_model):
            raise ValueError(f"projector outputs {projector.out_features} features but the LLM's input embeddings are "
                             f"{lm_embedding_width(language_model)} wide")
        self.vpg = vpg
        self.projector = projector
        self.language_model = language_model
        self.image_token_index = image_token_index

    # ----- trainable parts -------------------------------------------------------------------
    def part_modules(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of each named part: vit, ln_vision, qformer, query_tokens, projector, llm."""
        vit = [p for n, p in self.vpg.vision_model.named_parameters() if not n.startswith("post_layernorm.")]
        return {"vit": vit, "ln_vision": list(self.vpg.ln_vision.parameters()),
                "qformer": list(self.vpg.qformer.parameters()), "query_tokens": [self.vpg.query_tokens],
                "projector": list(self.projector.parameters()), "llm": list(self.language_model.parameters())}

    def set_trainable(self, parts: Sequence[str]) -> None:
        """Freeze everything, then unfreeze ``parts`` (WARMUP_PARTS, TRANSFER_PARTS or any of PARTS)."""
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
        self.requires_grad_(False)
        table = self.part_modules()
        for part in parts:
            for param in table[part]:
                param.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> VisionLanguageModel:
        """As LAVIS: a frozen ViT always runs in eval mode (the LLM follows ``mode``)."""
        super().train(mode)
        if not self.vpg.vit_trainable():
            self.vpg.vision_model.eval()
        return self

    # ----- forward ---------------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The VPG's output [B, Q, d_qformer]: what a warm-up feature cache stores."""
        return self.vpg(pixel_values)

    def visual_embeds(self, pixel_values: torch.Tensor | None = None,
                      query_output: torch.Tensor | None = None) -> torch.Tensor:
        """Projected visual tokens [B, Q, d_llm], from pixels or from cached Q-Former outputs."""
        if (pixel_values is None) == (query_output is None):
            raise ValueError("give exactly one of pixel_values and query_output")
        if query_output is None:
            query_output = self.encode_images(pixel_values)
        elif any(p.requires_grad for p in self.vpg.parameters()):
            raise ValueError("cached Q-Former outputs cannot be used while a VPG part trains (they would be stale)")
        return self.projector(query_output.to(self.projector.weight.dtype))

    def merge_inputs(self, visual: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """LM inputs for ``[visual][text]``: inputs_embeds, attention_mask, position_ids (+ labels)."""
        batch, q = visual.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text = self.language_model.get_input_embeddings()(input_ids)
        ones = torch.ones(batch, q, dtype=attention_mask.dtype, device=attention_mask.device)
        embeds = torch.cat([visual.to(text.dtype), text], 1)
        mask = torch.cat([ones, attention_mask], 1)
        full_labels = None
        if labels is not None:
            labels = labels.masked_fill(attention_mask == 0, IGNORE_INDEX)
            full_labels = torch.cat([torch.full((batch, q), IGNORE_INDEX, dtype=labels.dtype, device=labels.device),
                                     labels], 1)
        order = _visual_first_order(attention_mask, q)
        if order is not None:
            embeds = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))
            mask = mask.gather(1, order)
            full_labels = full_labels.gather(1, order) if full_labels is not None else None
        position_ids = (mask.long().cumsum(1) - 1).clamp(min=0)
        out = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": position_ids}
        if full_labels is not None:
            out["labels"] = full_labels
        return out

    def forward(self, pixel_values: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                query_output: torch.Tensor | None = None, **lm_kwargs: Any) -> Any:
        """The LM's output (``loss`` when ``labels`` are given, ``logits`` over visual + text positions)."""
        if input_ids is None:
            raise ValueError("input_ids (the text after the visual tokens, BOS included) are required")
        inputs = self.merge_inputs(self.visual_embeds(pixel_values, query_output), input_ids, attention_mask, labels)
        return self.language_model(**inputs, **lm_kwargs)

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, query_output: torch.Tensor | None = None,
                 **generate_kwargs: Any) -> torch.Tensor:
        """New token ids only, decoded by the LM's ``generate`` from inputs_embeds (KV cache on).

        ``input_ids``: left-padded ``[BOS] prompt`` rows (defaults to a lone BOS per image).
        """
        visual = self.visual_embeds(pixel_values, query_output)
        if input_ids is None:
            bos = self.language_model.config.bos_token_id
            input_ids = torch.full((visual.shape[0], 1), bos, dtype=torch.long, device=visual.device)
        inputs = self.merge_inputs(visual, input_ids, attention_mask)
        inputs.pop("position_ids")  # generate derives them from the mask, step by step
        return self.language_model.generate(**inputs, **generate_kwargs)

    # ----- transformers' BLIP-2 --------------------------------------------------------------
    def blip2_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     image_token_index: int | None = None) -> dict[str, torch.Tensor]:
        """The same text as Blip2ForConditionalGeneration wants it: Q image tokens before each row's text."""
        index = self._image_token(image_token_index)
        batch, q = input_ids.shape[0], self.vpg.num_query_tokens
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ids = torch.cat([torch.full((batch, q), index, dtype=input_ids.dtype, device=input_ids.device), input_ids], 1)
        mask = torch.cat([torch.ones(batch, q, dtype=attention_mask.dtype, device=attention_mask.device),
                          attention_mask], 1)
        order = _visual_first_order(attention_mask, q)
        if order is not None:
            ids, mask = ids.gather(1, order), mask.gather(1, order)
        return {"input_ids": ids, "attention_mask": mask}

    def _image_token(self, image_token_index: int | None) -> int:
        index = image_token_index if image_token_index is not None else self.image_token_index
        if index is None:
            raise ValueError("no image token index: call ensure_image_token(tokenizer, model) first")
        return int(index)

    def to_blip2(self, image_token_index: int | None = None) -> Any:
        """A Blip2ForConditionalGeneration that SHARES this model's modules (no copy, no re-init)."""
        return assemble_blip2(self.vpg.vision_model, self.vpg.qformer, self.vpg.query_tokens, self.projector,
                              self.language_model, self._image_token(image_token_index))

    @classmethod
    def from_blip2(cls, model: Any) -> VisionLanguageModel:
        """Wrap a Blip2ForConditionalGeneration's modules (shared) as a VisionLanguageModel."""
        if not model.config.use_decoder_only_language_model:
            raise ValueError("only BLIP-2 models on decoder-only LMs (OPT, LLaMA) are supported")
        vpg = VisualPromptGenerator(model.vision_model, model.qformer, model.query_tokens.detach())
        vpg.query_tokens = model.query_tokens
        return cls(vpg, model.language_projection, model.language_model, model.config.image_token_index)

    def save_blip2(self, out_dir: Path, tokenizer: Any, image_processor: Any) -> Path:
        """Write a folder that ``Blip2ForConditionalGeneration`` / ``Blip2Processor`` load as is."""
        return save_blip2_folder(self.to_blip2(ensure_image_token(tokenizer, self)), tokenizer, image_processor,
                                 out_dir)


def _visual_first_order(attention_mask: torch.Tensor, q: int) -> torch.Tensor | None:
    """Column order that moves a left-padded row's pads in front of its Q visual positions."""
    leading_pads = attention_mask.cumsum(1) == 0
    if not bool(leading_pads.any()):
        return None
    ones = torch.ones(attention_mask.shape[0], q, dtype=torch.long, device=attention_mask.device)
    return torch.argsort(torch.cat([ones, (~leading_pads).long()], 1), dim=1, stable=True)


def ensure_image_token(tokenizer: Any, model: VisionLanguageModel | nn.Module) -> int:
    """``<image>``'s id, added to the tokenizer (and the LM grown) if needed; see sources.hf_blip2."""
    lm = model.language_model if isinstance(model, VisionLanguageModel) else model
    index = _ensure_image_token(tokenizer, lm)
    if isinstance(model, VisionLanguageModel):
        model.image_token_index = index
    return index


def vpg_of(parts: Blip2Parts) -> VisualPromptGenerator:
    """The VPG of a loaded BLIP-2 source (sources.hf_blip2.load_blip2_parts)."""
    return VisualPromptGenerator(parts.vision_model, parts.qformer, parts.query_tokens)


def assemble(vpg: VisualPromptGenerator, projector: nn.Linear, language_model: nn.Module, tokenizer: Any,
             parts: Sequence[str] = WARMUP_PARTS) -> VisionLanguageModel:
    """The usual construction: model + ``<image>`` in the tokenizer + the stage's trainable parts."""
    model = VisionLanguageModel(vpg, projector, language_model)
    ensure_image_token(tokenizer, model)
    model.set_trainable(parts)
    return model
