"""The assembled multimodal LM: a BLIP-2 VPG + projector in front of any transformers causal LM.

vltool's VPGTrans model IS transformers' ``Blip2ForConditionalGeneration`` (with an OPT or
LLaMA ``text_config``), so a trained model saves as a normal HF folder that plain transformers
loads with identical outputs. This module adds what stages need around it: the token layout
(``num_query_tokens`` image placeholders, then BOS, prompt, answer), a loss that can start from
cached Q-Former outputs (the frozen-VPG feature cache of the warm-up) and runs the LM head on the
caption positions only (``lm_loss``), and batched generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import Blip2ForConditionalGeneration, PreTrainedModel
from transformers.models.blip_2.modeling_blip_2 import BaseModelOutputWithVisionQformerOutputs

from vltool.data.text_batches import IGNORE, TextEncoder, end_of_text_id
from vltool.models.lm_loss import labelled_loss, unwrap
from vltool.sources.hf_blip2 import assemble_blip2


def assemble(
    vision_model: nn.Module, qformer: nn.Module, query_tokens: torch.Tensor, projector: nn.Linear,
    language_model: PreTrainedModel, image_token_index: int,
) -> Blip2ForConditionalGeneration:
    """Put trained parts into one Blip2ForConditionalGeneration without re-initialising them.

    The query tokens are copied (training them must not change the source they came from); the
    modules are shared.
    """
    return assemble_blip2(vision_model, qformer, nn.Parameter(query_tokens.detach().clone()), projector,
                          language_model, image_token_index)


def query_output(model: Blip2ForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """Q-Former outputs [B, Q, d_qformer] for a batch of images: what the feature cache stores."""
    image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
    mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    return model.qformer(query_embeds=queries, encoder_hidden_states=image_embeds,
                         encoder_attention_mask=mask).last_hidden_state


def forward(model: Blip2ForConditionalGeneration, batch: dict[str, torch.Tensor]):
    """Forward from pixels, or from cached Q-Former outputs (``batch['query_output']``)."""
    if "query_output" in batch:
        # The projector runs before the (DDP-wrapped) model's own forward: reached through the
        # wrapper, its gradient is still all-reduced by the wrapper's per-parameter hooks
        # (tests/e2e/test_stage_ddp.py: two processes give the one-process projector).
        features = unwrap(model).language_projection(batch["query_output"])
        encoded = {"image": BaseModelOutputWithVisionQformerOutputs(pooler_output=features)}
        return model(pixel_values=None, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch.get("labels"), mm_encoder_outputs=encoded)
    return model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                 attention_mask=batch["attention_mask"], labels=batch.get("labels"))


WARMUP_PARTS = ("projector",)
STAGE2_PARTS = ("qformer", "query_tokens", "ln_vision", "projector")


def set_trainable(model: Blip2ForConditionalGeneration, parts: Sequence[str]) -> None:
    """Freeze everything, then unfreeze the named VPG parts: qformer, query_tokens, ln_vision, projector."""
    model.requires_grad_(False)
    table = {"qformer": model.qformer, "ln_vision": model.vision_model.post_layernorm,
             "projector": model.language_projection}
    for part in parts:
        if part == "query_tokens":
            model.query_tokens.requires_grad_(True)
        else:
            table[part].requires_grad_(True)


def caption_loss(model: Blip2ForConditionalGeneration, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training loss: ``forward(...).loss`` (mean caption cross-entropy, same gradients), with
    the LM head on the captions' labelled positions only, never the query slots (``lm_loss``)."""
    unlabelled = {k: v for k, v in batch.items() if k != "labels"}
    return labelled_loss(unwrap(model).language_model, batch["labels"], lambda: forward(model, unlabelled))[0]


class VLTextLayout:
    """Token layout shared by training and generation: Q image placeholders + BOS + prompt (+ answer + end).

    ``end_of_text`` ends every answer and stops generation (``text_batches.end_of_text_id``: "\n"
    as the paper, "eos", "auto"; None = the tokenizer's EOS). ``prompt`` is the text put before
    answers whose sample has no prompt of its own (captions; VPGTrans pre-trains with "").
    """

    def __init__(self, tokenizer, num_query_tokens: int, image_token_index: int, max_answer_tokens: int = 32,
                 end_of_text: str | None = None, prompt: str = "") -> None:

        self.stop_id = end_of_text_id(tokenizer, end_of_text)
        self.encoder = TextEncoder(tokenizer, max_answer_tokens=max_answer_tokens, end_id=self.stop_id)
        self.tokenizer = tokenizer
        self.prefix = [image_token_index] * num_query_tokens
        self.prompt = prompt

    def _prompts(self, prompts: Sequence[str]) -> list[str]:
        return [p or self.prompt for p in prompts]

    def training(self, prompts: Sequence[str], answers: Sequence[str]) -> dict[str, torch.Tensor]:
        text = self.encoder.training_batch(self._prompts(prompts), answers)
        n, q = text["input_ids"].shape[0], len(self.prefix)
        prefix = torch.tensor(self.prefix).expand(n, q)
        return {
            "input_ids": torch.cat([prefix, text["input_ids"]], 1),
            "attention_mask": torch.cat([torch.ones(n, q, dtype=torch.long), text["attention_mask"]], 1),
            "labels": torch.cat([torch.full((n, q), IGNORE), text["labels"]], 1),
        }

    def generation(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Left-padded: pads first, then the image placeholders, then BOS + prompt."""
        rows = [self.prefix + self.encoder.encode_prompt(p) for p in self._prompts(prompts)]
        return {"input_ids": self.encoder.pad(rows, self.encoder.pad_id, left=True),
                "attention_mask": self.encoder.pad([[1] * len(r) for r in rows], 0, left=True)}


def stop_ids(model, tokenizer, extra: int | None = None) -> list[int]:
    """Every id that ends generation: the model's own ``eos_token_id`` (never overridden: a real
    BLIP-2 OPT stops at 50118 = "\n"), the tokenizer's EOS, and ``extra`` (the layout's end of text)."""
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    own = getattr(config, "eos_token_id", None) if config is not None else None
    for value in ([extra] + (own if isinstance(own, list) else [own]) + [tokenizer.eos_token_id]):
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    return ids


@torch.no_grad()
def generate(
    model: Blip2ForConditionalGeneration, layout: VLTextLayout, pixel_values: torch.Tensor,
    prompts: Sequence[str], max_new_tokens: int = 30, num_beams: int = 1, min_new_tokens: int = 0,
    **decoding: Any,
) -> list[str]:
    """Greedy or beam decoding with the KV cache; returns only the generated continuation.

    ``decoding``: further ``generate`` settings of the benchmark (``length_penalty``, or
    ``do_sample`` / ``temperature`` / ``top_p``: ``GenerationSettings.decoding``)."""
    batch = layout.generation(prompts)
    device = next(model.parameters()).device
    # a layout whose end is a string (the chat turn's "###") adds stop_strings and cuts the text there
    extra = getattr(layout, "generate_kwargs", {})
    out = model.generate(
        pixel_values=pixel_values.to(device), input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device), max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens, **{"num_beams": num_beams, "do_sample": False, **decoding, **extra},
        eos_token_id=stop_ids(model, layout.tokenizer, layout.stop_id), pad_token_id=layout.encoder.pad_id,
    )
    new = out[:, batch["input_ids"].shape[1]:] if out.shape[1] > batch["input_ids"].shape[1] else out[:, :0]
    trim = getattr(layout, "trim", str.strip)
    return [trim(t) for t in layout.tokenizer.batch_decode(new, skip_special_tokens=True)]
