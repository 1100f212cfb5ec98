"""Real-scale models without weights: parameter counts and memory estimates for ``--dry-run``.

The architectures of the aliases ship as JSON (``vltool/sources/arch``), so BLIP-2 ViT-g +
Q-Former + OPT/LLaMA are built on the meta device offline in a second or two, and users see
what a recipe trains and roughly what memory it needs before renting a GPU.

Memory estimate (per GPU, no sharding): frozen weights at the compute precision (2 bytes for
bf16/fp16, 4 for fp32) + trainable weights in fp32 (4) + their gradients (4) + AdamW's two
moments (8). Activations are not included: they depend on batch and sequence length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

ARCH_DIR = Path(__file__).resolve().parents[1] / "sources" / "arch"


def arch(name: str) -> dict[str, Any]:
    return json.loads((ARCH_DIR / f"{name}.json").read_text())


def count(module: nn.Module | torch.Tensor) -> int:
    if isinstance(module, torch.Tensor):
        return module.numel()
    return sum(p.numel() for p in module.parameters())


def text_config(data: dict[str, Any]):
    from transformers import LlamaConfig, OPTConfig

    data = {k: v for k, v in data.items() if k != "model_type"}
    return LlamaConfig(**data) if "rms_norm_eps" in data else OPTConfig(**data)


def meta_blip2(source: dict[str, Any], target_text: dict[str, Any]):
    """BLIP-2 (source VPG) on the target LLM, on the meta device."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    config = Blip2Config(vision_config=source["vision"], qformer_config=source["qformer"],
                         text_config=text_config(target_text).to_dict(), num_query_tokens=source["num_query_tokens"])
    with torch.device("meta"):
        return Blip2ForConditionalGeneration(config)


def memory_gb(frozen: int, trainable: int, precision: str) -> float:
    weight_bytes = 4 if precision == "no" else 2
    return (frozen * weight_bytes + trainable * (4 + 4 + 8)) / 1024**3


def _arch_of(spec: str, role: str) -> dict[str, Any]:
    from vltool.errors import UserError
    from vltool.sources.aliases import find_alias

    alias = find_alias(spec, role)
    if alias is None or alias.arch is None:
        path = Path(spec) / "config.json"
        if path.is_file():
            raise UserError(f"--dry-run works on the real-scale aliases; {spec} is a local model: its counts "
                            f"come from the real run")
        raise UserError(f"--dry-run needs a real-scale {role} alias with a shipped architecture; {spec!r} has none")
    return arch(alias.arch)


def vpgtrans_table(cfg) -> dict[str, Any]:
    """Parameters per part, trainable in each VPGTrans stage, and a memory estimate."""
    source = _arch_of(cfg.src, "source")
    target = _arch_of(cfg.dst, "target")["text"]
    model = meta_blip2(source, target)
    parts = {
        "ViT (frozen)": count(model.vision_model) - count(model.vision_model.post_layernorm),
        "ln_vision": count(model.vision_model.post_layernorm),
        "Q-Former": count(model.qformer),
        "query tokens": count(model.query_tokens),
        "projector": count(model.language_projection),
        "LLM (frozen)": count(model.language_model),
    }
    warm = {"projector"}
    stage2 = {"ln_vision", "Q-Former", "query tokens", "projector"}
    total = sum(parts.values())
    precision = cfg.train.precision if cfg.train.precision != "auto" else "bf16"
    rows = [[name, n, n if name in warm else 0, n if name in stage2 else 0] for name, n in parts.items()]
    t_warm = sum(parts[p] for p in warm)
    t_stage2 = sum(parts[p] for p in stage2)
    rows.append(["total", total, t_warm, t_stage2])
    rows.append(["memory estimate (GB)", "", round(memory_gb(total - t_warm, t_warm, precision), 1),
                 round(memory_gb(total - t_stage2, t_stage2, precision), 1)])
    return {
        "title": f"VPGTrans {cfg.src} -> {cfg.dst} (real scale, meta device, no weights)",
        "columns": ["part", "parameters", "trainable: warm-up", "trainable: transfer"],
        "rows": rows,
        "notes": [f"memory: frozen weights in {precision} + fp32 trainables, grads and AdamW states; "
                  "activations not included", "ViT-g/14 EVA (1408 wide, 39 blocks), Q-Former BERT-base, 32 queries"],
        "counts": parts,
    }
