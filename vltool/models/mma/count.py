"""Parameter tables for ``tune-mma --dry-run``: real-scale models on the meta device.

Known answer (PAPERS.md 2): LaVIN-7B (LLaMA-7B, CLIP ViT-L/14, ``attn`` adapters of width 8 in
all 32 LLM layers and 24 CLIP blocks, 6 visual tokens) trains 3,781,296 parameters:
2,621,760 LLM adapters + 491,760 CLIP adapters + 659,584 visual projection + 8,192 modality
embedding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vltool.models.meta_count import _arch_of, arch, count, memory_gb, meta_blip2, text_config
from vltool.models.mma.adapter import MMAdapter
from vltool.models.mma.inject import inject


def clip_projection(vision_width: int, llm_width: int, hidden: int = 128) -> nn.Sequential:
    """LaVIN's visual projection: Linear(1024 -> 128), SiLU, Linear(128 -> d)."""
    return nn.Sequential(nn.Linear(vision_width, hidden), nn.SiLU(), nn.Linear(hidden, llm_width))


def adapter_kwargs(cfg) -> dict[str, Any]:
    a = cfg.adapter
    return {"bottleneck": a.dim, "groups": a.groups, "scale": a.scale, "dropout": a.dropout,
            "router": a.router, "temperature": a.temperature}


def lavin_table(cfg) -> dict[str, Any]:
    """Trainable / total parameters of an MMA recipe at real scale, per part."""
    from transformers import AutoModelForCausalLM, CLIPVisionConfig, CLIPVisionModel

    kwargs = adapter_kwargs(cfg)
    with torch.device("meta"):
        if cfg.front_end == "clip":
            lm = AutoModelForCausalLM.from_config(text_config(_arch_of(cfg.model, "target")["text"]))
            vision_arch = arch("clip-vit-l14")["vision"]
            vision = CLIPVisionModel(CLIPVisionConfig(**vision_arch))
            projection = clip_projection(vision_arch["hidden_size"], lm.config.hidden_size)
            frozen_vision = {"CLIP ViT-L/14 (frozen)": count(vision)}
            vision_width, vision_layers = vision_arch["hidden_size"], vision_arch["num_hidden_layers"]
            proj_name = "visual projection (1024-128-d)"
        else:
            source = arch("blip2-opt-2.7b")
            target = _arch_of(cfg.model, "target")["text"]
            blip2 = meta_blip2(source, target)
            lm, projection = blip2.language_model, blip2.language_projection
            frozen_vision = {"ViT-g (frozen)": count(blip2.vision_model),
                             "Q-Former + queries (frozen)": count(blip2.qformer) + count(blip2.query_tokens)}
            vision_width, vision_layers = source["vision"]["hidden_size"], source["vision"]["num_hidden_layers"]
            proj_name = "projector (Q-Former -> d)"
        llm_total = count(lm)
        llm_adapters = sum(count(w.adapter) for w in inject(lm, cfg.adapter.placement, **kwargs))
        vision_adapters = vision_layers * count(MMAdapter(vision_width, **kwargs)) if cfg.adapter.vision else 0
    width = lm.config.hidden_size
    parts = {
        "LLM (frozen)": (llm_total, 0),
        **{k: (v, 0) for k, v in frozen_vision.items()},
        "LLM MM-Adapters": (llm_adapters, llm_adapters),
        "vision MM-Adapters": (vision_adapters, vision_adapters),
        proj_name: (count(projection), count(projection)),
        "modality embedding": (2 * width, 2 * width),
    }
    total = sum(v[0] for v in parts.values())
    trainable = sum(v[1] for v in parts.values())
    precision = cfg.train.precision if cfg.train.precision != "auto" else "bf16"
    rows = [[name, n, t] for name, (n, t) in parts.items()]
    rows.append(["total", total, trainable])
    rows.append(["trainable share (%)", "", round(100 * trainable / total, 4)])
    rows.append(["memory estimate (GB)", "", round(memory_gb(total - trainable, trainable, precision), 1)])
    return {
        "title": f"tune-mma {cfg.model} ({cfg.front_end} front end, {cfg.adapter.placement} adapters, "
                 f"real scale, meta device)",
        "columns": ["part", "parameters", "trainable"],
        "rows": rows,
        "notes": [f"memory: frozen weights in {precision} + fp32 trainables, grads and AdamW states; "
                  "activations not included"],
        "trainable": trainable,
        "total": total,
    }
