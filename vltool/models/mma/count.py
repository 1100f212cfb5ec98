"""Parameter tables for ``tune-mma --dry-run``: what an MMA model holds and what it trains.

The table is read off the model itself (built on the meta device at real scale), by parameter
name and ``requires_grad``, so it counts what training would actually update. Known answer
(PAPERS.md 2): LaVIN-7B trains 3,781,296 parameters = 2,621,760 LLM adapters + 491,760 CLIP
adapters + 659,584 visual projection + 8,192 modality embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from vltool.models.memory import frozen_dtype_name
from vltool.models.meta_count import (
    GIB,
    _arch_of,
    arch,
    frozen_weight_bytes,
    layers_activation_bytes,
    meta_blip2,
    text_config,
    weight_bytes,
)
from vltool.models.mma.build import build_qformer_mma, settings_from
from vltool.models.mma.inject import wrappers
from vltool.models.mma.lavin7b import meta_clip_mma
from vltool.models.mma.layout import MAX_ANSWER_TOKENS

PARTS = ("LLM (frozen)", "LLM MM-Adapters", "vision encoder (frozen)", "vision MM-Adapters",
         "visual projection", "modality embedding")


@dataclass(frozen=True)
class PartCount:
    part: str
    parameters: int
    trainable: int


def part_of(name: str) -> str:
    """Which row of the table a parameter of an MMAModel belongs to."""
    if name.startswith("modality."):
        return "modality embedding"
    if name.startswith("front_end.projector."):
        return "visual projection"
    if name.startswith("lm."):
        return "LLM MM-Adapters" if ".adapter." in name else "LLM (frozen)"
    return "vision MM-Adapters" if ".adapter." in name else "vision encoder (frozen)"


def parameter_table(model: nn.Module) -> list[PartCount]:
    """Parameters and trainable parameters per part (tied/shared tensors counted once)."""
    totals = {p: [0, 0] for p in PARTS}
    for name, param in model.named_parameters():
        row = totals[part_of(name)]
        row[0] += param.numel()
        row[1] += param.numel() if param.requires_grad else 0
    return [PartCount(part, n, t) for part, (n, t) in totals.items()]


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def activation_gb(model, batch: int, tokens: int, precision: str, checkpointing: bool = False,
                  answer_tokens: int | None = None) -> float:
    """Activations kept for backward (GiB), Korthikanti et al. (2022) per layer, no recomputation.

    Every LLM layer holds an adapter, so backward passes through all of them; so it does through
    the vision encoder when it holds adapters. Plus the logits and their gradient in fp32, for the
    answer tokens only (the loss runs the LM head on the labelled positions, ``lm_loss``):
    ``answer_tokens`` a row, by default the most the collator keeps (``MAX_ANSWER_TOKENS`` + EOS,
    at most ``tokens``), an upper bound: ScienceQA answers with their explanation are shorter.
    Checked on an H100 (bench/gpu_mma_real_scale.py): LaVIN-7B at 8 x 263 tokens in bf16 peaked at
    25.8 GiB with the full-sequence logits of the loss before ``lm_loss``; this estimate gave
    27.6 GiB for that shape (counting 257 of the 263 positions now takes 0.01 GiB off).
    """

    value_bytes = weight_bytes(precision)
    lm = model.lm.config
    total = layers_activation_bytes(lm.num_hidden_layers, tokens, batch, lm.hidden_size, lm.num_attention_heads,
                                    value_bytes, checkpointing)
    labelled = min(tokens, MAX_ANSWER_TOKENS + 1) if answer_tokens is None else answer_tokens
    total += batch * labelled * lm.vocab_size * 8
    front = model.front_end
    vision = getattr(front, "vision", None) or getattr(front, "vision_model", None)
    if vision is not None and wrappers(vision):
        vc = vision.config
        patches = (vc.image_size // vc.patch_size) ** 2 + 1
        total += layers_activation_bytes(vc.num_hidden_layers, patches, batch, vc.hidden_size, vc.num_attention_heads,
                                         value_bytes, checkpointing)
    return total / GIB


def lavin_table(cfg) -> dict[str, Any]:
    """The dry-run table of an MMA recipe at real scale (the shape the CLI renders)."""

    settings = settings_from(cfg.adapter.model_dump())
    target = _arch_of(cfg.model, "target")["text"] if cfg.front_end == "clip" else None
    if cfg.front_end == "clip":
        from transformers import CLIPVisionConfig

        vision = CLIPVisionConfig(**arch("clip-vit-l14")["vision"])
        model = meta_clip_mma(text_config(target), vision, settings, cfg.adapter.placement, cfg.visual_tokens,
                              cfg.adapter.vision)
        vision_name = "CLIP ViT-L/14"
    else:
        import torch

        blip2 = meta_blip2(arch("blip2-opt-2.7b"), _arch_of(cfg.model, "target")["text"])
        with torch.device("meta"):
            model = build_qformer_mma(blip2, settings, cfg.adapter.placement, cfg.adapter.vision)
        vision_name = "ViT-g + Q-Former"
    rows_by_part = {r.part: r for r in parameter_table(model)}
    total = sum(r.parameters for r in rows_by_part.values())
    trainable = sum(r.trainable for r in rows_by_part.values())
    precision = cfg.train.precision if cfg.train.precision != "auto" else "bf16"
    shown = {"vision encoder (frozen)": f"{vision_name} (frozen)",
             "visual projection": "visual projection (1024-128-d)" if cfg.front_end == "clip"
             else "projector (Q-Former -> d)"}
    rows: list[list[Any]] = [[shown.get(r.part, r.part), r.parameters, r.trainable] for r in rows_by_part.values()]
    rows.append(["total", total, trainable])
    rows.append(["trainable share (%)", "", round(100 * trainable / total, 4)])
    checkpointing = getattr(cfg.train, "gradient_checkpointing", False)
    quantization = getattr(cfg.train, "llm_quantization", "none")
    frozen = frozen_dtype_name(getattr(cfg.train, "frozen_dtype", "auto"), precision)
    states = (frozen_weight_bytes(model, frozen, quantization) + trainable * (4 + 4 + 8)) / GIB
    batch = cfg.train.micro_batch_size or cfg.train.batch_size
    tokens = cfg.max_length
    acts = activation_gb(model, batch, tokens, precision, checkpointing)
    rows.append(["memory: weights + trainable states (GiB)", "", round(states, 1)])
    rows.append([f"memory: activations, micro-batch {batch} x {tokens} tokens (GiB)", "", round(acts, 1)])
    rows.append(["memory estimate (GiB)", "", round(states + acts, 1)])
    return {
        "title": f"tune-mma {cfg.model} ({cfg.front_end} front end, {cfg.adapter.placement} adapters, "
                 f"real scale, meta device)",
        "columns": ["part", "parameters", "trainable"],
        "rows": rows,
        "notes": [f"memory per GPU: frozen LLM/ViT weight matrices in {frozen} (train.frozen_dtype), other frozen "
                  f"tensors in fp32, fp32 trainables with grads and AdamW states, "
                  f"activations for sequences of max_length={tokens} tokens (an upper bound) without recomputation; "
                  f"lower train.micro_batch_size to fit"],
        "memory_gb": round(states + acts, 2),
        "trainable": trainable,
        "total": total,
        "parts": {r.part: r.trainable for r in rows_by_part.values()},
    }
