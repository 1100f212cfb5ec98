"""Real-scale models without weights: parameter counts and memory estimates for ``--dry-run``.

The architectures of the real aliases ship as JSON (``vltool/sources/arch``), so BLIP-2's EVA
ViT-g/14 + Q-Former + OPT/LLaMA are built on the meta device offline in about a second, with the
same ``Blip2ForConditionalGeneration`` and trainable parts the stages train. Users see what a recipe
trains and roughly what memory it needs before renting a GPU. Local HF folders work too (only
their config.json is read).

Memory estimate per GPU, no sharding, in GiB (a planning figure, not a promise):
- weights: the frozen LLM's and ViT's weight matrices in ``train.frozen_dtype`` (``auto``: the
  compute precision, 2 bytes for bf16/fp16, 4 for fp32), every other frozen tensor in fp32 (norms,
  biases, the Q-Former frozen during the warm-up): exactly the tensors the training loop casts;
- trainable parameters: 16 bytes each = fp32 weight (4) + fp32 gradient (4) + AdamW's two fp32
  moments (8);
- activations, kept for backward, at 2 bytes (4 in fp32) per value, per transformer layer that
  backward passes through, with the per-layer formula of Korthikanti et al. (2022) without
  recomputation: ``s * b * h * (34 + 5 * a * s / h)`` (s tokens, b micro-batch, h width,
  a heads). The LLM's layers count in BOTH stages: the projector sits before the frozen LLM, so
  the gradient flows back through all of it. The Q-Former's layers count in the transfer stage
  only (s = query tokens), plus the ViT features it cross-attends to. The frozen ViT runs
  without autograd and keeps nothing. Add the logits: ``b * max_text_tokens * vocab * 8`` bytes
  (fp32 logits and their gradient): the training loss runs the LM head on the labelled caption
  positions only (``vltool.models.lm_loss``), never the query slots or BOS, so the estimate takes
  one row per caption token at the recipe's ``max_text_tokens`` (a full-length caption adds its
  end token; real batches of shorter captions have fewer). s for the LLM = query tokens + BOS +
  the recipe's ``max_text_tokens``.

Levers (``train.*``), each reflected in the estimate:
- ``gradient_checkpointing``: a checkpointed layer keeps only its input, ``s * b * h`` values,
  and backward recomputes one layer at a time, so the LLM term becomes
  ``L * s * b * h * value_bytes + (one layer's full activations)`` (likewise the ViT's layers
  in tune-mma with vision adapters);
- ``llm_quantization``: the LLM's decoder linear weights at 1 byte (int8) or 0.5 + 1/64 bytes
  (nf4: 4-bit values plus an fp32 scale per 64) a parameter; embeddings and the LM head stay in
  ``frozen_dtype``, norms in fp32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.errors import UserError
from vltool.models import vlm
from vltool.models.memory import QUANTIZATION_BYTES, _is_causal_lm, frozen_dtype_name, frozen_tower_parameters
from vltool.models.vlm import set_trainable
from vltool.sources.aliases import alias_path, find_alias, names_alias
from vltool.sources.hub_cache import cached_snapshot, hf_cache_dir, looks_like_hub_id, offline, split_revision

ARCH_DIR = Path(__file__).resolve().parents[1] / "sources" / "arch"
GIB = 1024**3
PART_LABELS = {"vit": "ViT (frozen)", "ln_vision": "ln_vision", "qformer": "Q-Former", "query_tokens": "query tokens",
               "projector": "projector", "llm": "LLM (frozen)"}


def arch(name: str) -> dict[str, Any]:
    return json.loads((ARCH_DIR / f"{name}.json").read_text())


def count(module: nn.Module | torch.Tensor) -> int:
    if isinstance(module, torch.Tensor):
        return module.numel()
    return sum(p.numel() for p in module.parameters())


def text_config(data: dict[str, Any]) -> Any:
    """A transformers config for a causal LM from its JSON dict (``model_type`` picks the class)."""
    from transformers import AutoConfig

    data = dict(data)
    model_type = data.pop("model_type", None) or ("llama" if "rms_norm_eps" in data else "opt")
    for key in ("transformers_version", "architectures", "_name_or_path"):
        data.pop(key, None)
    return AutoConfig.for_model(model_type, **data)


def _folder_arch(path: Path, role: str) -> dict[str, Any] | None:
    config = path / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    if data.get("model_type") == "blip-2":
        return {"kind": "blip2", "vision": data.get("vision_config", {}), "qformer": data.get("qformer_config", {}),
                "text": data.get("text_config", {}), "num_query_tokens": data.get("num_query_tokens", 32)}
    return {"kind": "causal-lm", "text": data} if role == "target" else None


def _arch_of(spec: str, role: str) -> dict[str, Any]:
    """The architecture behind an alias (shipped JSON) or a local HF folder (its config.json)."""

    name, revision = split_revision(spec) if not Path(spec).expanduser().exists() else (spec, None)
    alias = find_alias(name, role) if names_alias(name, role) else None
    if alias is not None and alias.arch is not None:
        return arch(alias.arch)  # a real-scale alias: its shipped architecture, no download needed
    path = (alias_path(alias) if alias is not None else None) or Path(name).expanduser()
    if not path.is_dir():
        path = _hub_config_folder(name, revision) or path
    if path.is_dir():
        found = _folder_arch(path, role)
        if found is not None:
            return found
        raise UserError(f"--dry-run: {spec} has no config.json of a {'BLIP-2 model' if role == 'source' else 'causal LM'}"
                        f"; pass an alias or an HF folder")
    raise UserError(f"--dry-run needs a real-scale {role} alias with a shipped architecture or a local HF folder; "
                    f"{spec!r} is neither")


def _hub_config_folder(name: str, revision: str | None) -> Path | None:
    """A hub id's folder holding its config.json: the cached snapshot, or (online) just config.json fetched."""

    if not looks_like_hub_id(name):
        return None
    found = cached_snapshot(name, revision=revision)
    if found is not None or offline():
        return found
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(name, "config.json", revision=revision, cache_dir=str(hf_cache_dir()))).parent
    except Exception:  # noqa: BLE001  (the caller says what --dry-run needs)
        return None



def meta_blip2(source: dict[str, Any], target_text: dict[str, Any]) -> Any:
    """The model the stages train, on the meta device: the source's VPG + a projector + the target LLM.

    It is transformers' ``Blip2ForConditionalGeneration``, as in ``vltool.models.vlm``, so the
    dry-run counts the very parameters ``vlm.set_trainable`` unfreezes.
    """
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    config = Blip2Config(vision_config=source["vision"], qformer_config=source["qformer"],
                         text_config=text_config(target_text).to_dict(), num_query_tokens=source["num_query_tokens"])
    with torch.device("meta"):
        return Blip2ForConditionalGeneration(config)


def weight_bytes(precision: str) -> int:
    return 4 if precision == "no" else 2


def layer_activation_bytes(tokens: int, batch: int, width: int, heads: int, value_bytes: int) -> float:
    """Korthikanti et al. (2022), one transformer layer, no recomputation, scaled to ``value_bytes``."""
    return tokens * batch * width * (34 + 5 * heads * tokens / width) * value_bytes / 2


def layers_activation_bytes(layers: int, tokens: int, batch: int, width: int, heads: int, value_bytes: int,
                            checkpointed: bool = False) -> float:
    """``layers`` transformer layers kept for backward; checkpointed: their inputs + one layer recomputed."""
    full = layer_activation_bytes(tokens, batch, width, heads, value_bytes)
    if not checkpointed:
        return layers * full
    return layers * tokens * batch * width * value_bytes + full


def frozen_weight_bytes(model: nn.Module, frozen_dtype: str, quantization: str = "none") -> float:
    """Bytes of ``model``'s frozen parameters as a run stores them: the frozen LLM's and ViT's
    weight matrices in ``frozen_dtype`` (``models.memory.frozen_tower_parameters``, what
    ``train.frozen_dtype`` casts), the frozen LLM's decoder linears at their quantised size
    (``train.llm_quantization``), everything else frozen in fp32 (norms, biases, a frozen Q-Former)."""

    tower = {id(p) for _, p in frozen_tower_parameters(model)}
    per_param = QUANTIZATION_BYTES.get(quantization)
    quantised: set[int] = set()
    if per_param is not None:

        for lm in [m for m in model.modules() if _is_causal_lm(m)]:
            head = getattr(lm, "lm_head", None)
            quantised |= {id(m.weight) for m in lm.modules()
                          if type(m) is nn.Linear and m is not head and not m.weight.requires_grad}
    low = 4 if frozen_dtype == "fp32" else 2
    total = 0.0
    seen: set[int] = set()
    for p in model.parameters():
        if p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel() * (per_param if id(p) in quantised else low if id(p) in tower else 4)
    return total


def activation_gb(model: Any, stage: str, batch: int, text_tokens: int, precision: str,
                  checkpointing: bool = False) -> float:
    """The rough activation term of the module docstring, in GiB."""
    value_bytes = weight_bytes(precision)
    lm_config = model.language_model.config
    q = model.config.num_query_tokens
    seq = q + 1 + text_tokens
    heads = getattr(lm_config, "num_attention_heads", 1)
    total = layers_activation_bytes(lm_config.num_hidden_layers, seq, batch, lm_config.hidden_size, heads, value_bytes,
                                    checkpointing)
    total += batch * text_tokens * lm_config.vocab_size * 8  # logits of the labelled caption tokens only
    if stage == "transfer":
        qf = model.qformer.config
        vit = model.vision_model.config
        total += qf.num_hidden_layers * layer_activation_bytes(q, batch, qf.hidden_size, qf.num_attention_heads, 4)
        patches = (vit.image_size // vit.patch_size) ** 2 + 1
        total += batch * patches * vit.hidden_size * 4 * 2  # ViT features into ln_vision and out of it (fp32)
    return total / GIB


def part_counts(model: Any) -> dict[str, int]:
    """Parameters per VPGTrans part of a ``Blip2ForConditionalGeneration``."""
    ln_vision = count(model.vision_model.post_layernorm)
    return {"vit": count(model.vision_model) - ln_vision, "ln_vision": ln_vision, "qformer": count(model.qformer),
            "query_tokens": model.query_tokens.numel(), "projector": count(model.language_projection),
            "llm": count(model.language_model)}


def trainable_count(model: Any, parts: tuple[str, ...]) -> int:
    """What the stage that unfreezes ``parts`` trains, counted on the model by ``requires_grad``."""

    set_trainable(model, parts)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def vpgtrans_table(cfg: Any) -> dict[str, Any]:
    """Parameters per part, trainable in each VPGTrans stage, and a memory estimate per stage."""
    source = _arch_of(cfg.src, "source")
    target = _arch_of(cfg.dst, "target")["text"]
    model = meta_blip2(source, target)
    parts = part_counts(model)
    total = sum(parts.values())
    precision = cfg.train.precision if cfg.train.precision != "auto" else "bf16"
    batch = cfg.train.micro_batch_size or cfg.train.batch_size

    stage_parts = {"warm-up": vlm.WARMUP_PARTS, "transfer": vlm.STAGE2_PARTS}
    trainable = {stage: trainable_count(model, names) for stage, names in stage_parts.items()}
    rows: list[list[Any]] = [[PART_LABELS[p], n, n if p in stage_parts["warm-up"] else 0,
                              n if p in stage_parts["transfer"] else 0] for p, n in parts.items()]
    rows.append(["total", total, trainable["warm-up"], trainable["transfer"]])
    memory: dict[str, dict[str, float]] = {}
    checkpointing = getattr(cfg.train, "gradient_checkpointing", False)
    quantization = getattr(cfg.train, "llm_quantization", "none")
    frozen = frozen_dtype_name(getattr(cfg.train, "frozen_dtype", "auto"), precision)
    for stage, n in trainable.items():
        vlm.set_trainable(model, stage_parts[stage])
        weights = frozen_weight_bytes(model, frozen, quantization) / GIB
        optimizer = n * 16 / GIB
        acts = activation_gb(model, stage, batch, cfg.max_text_tokens, precision, checkpointing)
        memory[stage] = {"weights_gb": weights, "trainable_states_gb": optimizer, "activations_gb": acts,
                         "total_gb": weights + optimizer + acts}
    for key, label in (("weights_gb", f"memory: frozen weights (LLM/ViT matrices {frozen}), GiB"),
                       ("trainable_states_gb", "memory: trainables + grads + AdamW (fp32), GiB"),
                       ("activations_gb", f"memory: activations (micro-batch {batch}), GiB"),
                       ("total_gb", "memory estimate, GiB")):
        rows.append([label, "", round(memory["warm-up"][key], 2), round(memory["transfer"][key], 2)])
    counts = {PART_LABELS[p]: n for p, n in parts.items()}
    return {
        "title": f"VPGTrans {cfg.src} -> {cfg.dst} (real scale, meta device, no weights)",
        "columns": ["part", "parameters", "trainable: warm-up", "trainable: transfer"],
        "rows": rows,
        "notes": [f"memory per GPU without sharding: frozen LLM/ViT weight matrices in {frozen} (train.frozen_dtype), "
                  f"other frozen tensors in fp32, 16 bytes per trainable "
                  f"parameter, activations by Korthikanti et al. 2022 for the layers backward passes through "
                  f"(sequence {model.config.num_query_tokens} queries + BOS + {cfg.max_text_tokens} text tokens)",
                  "ViT: EVA ViT-g/14 (1408 wide, 39 blocks); Q-Former: BERT-base, cross-attention every 2nd layer",
                  f"levers: gradient_checkpointing={checkpointing} (LLM layers keep only their inputs), "
                  f"llm_quantization={quantization}"],
        "counts": counts,
        "memory": memory,
    }
