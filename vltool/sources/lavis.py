"""LAVIS BLIP-2 checkpoints (``.pth``) -> transformers' BLIP-2 tensor names, with every shape checked.

LAVIS writes ``{"model": state_dict, "config": ...}``; VPGTrans's released checkpoints keep only
the trained tensors, and LAVIS loads the EVA ViT-g weights from a separate file, so the ViT may
come from ``--vision``. The name map follows transformers' own conversion script (PAPERS.md 1):

- ``visual_encoder.{cls_token,pos_embed,patch_embed.proj}`` -> ``vision_model.embeddings.*``;
  ``blocks.{i}.{norm1,norm2,attn.qkv,attn.proj,mlp.fc1,mlp.fc2}`` -> ``encoder.layers.{i}.*``;
  EVA's ``attn.q_bias`` / ``attn.v_bias`` become the single ``self_attn.qkv.bias`` = (q, 0, v),
  exactly the bias EVA builds at every forward (the key projection has none);
- ``ln_vision`` -> ``vision_model.post_layernorm`` (LAVIS's LayerNorm uses eps 1e-5; transformers
  applies the vision config's 1e-6 -- a difference its own conversion accepts);
- ``Qformer.bert.embeddings.LayerNorm`` -> ``qformer.layernorm``;
  ``Qformer.bert.encoder.*`` -> ``qformer.encoder.*`` with ``.self.`` -> ``.attention.``;
- ``opt_proj`` / ``llama_proj`` / ``t5_proj`` -> ``language_projection``; ``query_tokens`` as is.

Tensors with no place in ``Blip2ForConditionalGeneration`` (the Q-Former's text embeddings,
text FFN and LM head, stage-1 contrastive/matching heads, LLM weights) are skipped and counted;
anything else unknown is an error, so a renamed checkpoint cannot load half-way.
Files are opened with ``torch.load(weights_only=True)``: tensors and plain containers only.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from vltool.errors import UserError

PROJECTOR_PREFIXES = ("opt_proj.", "llama_proj.", "t5_proj.")
SKIPPED = [  # (pattern, why it has no place in Blip2ForConditionalGeneration)
    (r"^Qformer\.cls\.", "Q-Former LM head (stage 1 only)"),
    (r"^Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings)\.", "Q-Former text embeddings (stage 1)"),
    (r"^Qformer\.bert\.embeddings\.position_ids$", "Q-Former text embeddings (stage 1)"),
    (r"^Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.", "Q-Former text FFN (stage 1 only)"),
    (r"^(vision_proj|text_proj|itm_head)\.|^temp$", "stage-1 contrastive / matching heads"),
    (r"^(opt_model|llama_model|t5_model|llm_model)\.", "LLM weights (the LLM comes from --dst)"),
]
VIT_FILE_SKIPPED = r"^(norm|fc_norm|head|rel_pos_bias)\."
_VIT_BLOCK = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.qkv": "self_attn.qkv",
              "attn.proj": "self_attn.projection", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}


def load_pth(path: Path, flag: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True``; refusals and corrupt files become one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file")
    with path.open("rb") as handle:
        head = handle.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # torch.save: a zip, or a legacy pickle
        raise UserError(f"{flag} {path} is not a readable PyTorch checkpoint (neither a zip nor a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        what = f"it contains a {found.group(1)} object" if found else "it contains objects other than tensors"
        raise UserError(f"{flag} {path}: {what}, and vltool loads .pth files with weights_only=True (tensors and "
                        f"plain containers only); re-save just its state dict") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise UserError(f"{flag} {path} is not a readable PyTorch checkpoint ({str(err).splitlines()[0]})") from None


def state_dict_of(obj: Any, path: Path, flag: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor dict inside a LAVIS checkpoint (``obj["model"]``) or a bare state dict."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{flag} {path}: expected a LAVIS checkpoint {{'model': state_dict, ...}} or a state dict "
                        f"of tensors")
    return obj


def _skip_reason(key: str) -> str | None:
    return next((why for pattern, why in SKIPPED if re.search(pattern, key)), None)


def map_vision(state: dict[str, torch.Tensor], prefix: str = "visual_encoder.") -> dict[str, torch.Tensor]:
    """EVA ViT tensors (keys under ``prefix``) -> ``vision_model.*``; q/v biases folded into qkv.bias."""
    out: dict[str, torch.Tensor] = {}
    simple = {"cls_token": "embeddings.class_embedding", "pos_embed": "embeddings.position_embedding",
              "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
              "patch_embed.proj.bias": "embeddings.patch_embedding.bias"}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name in simple:
            out[f"vision_model.{simple[name]}"] = value
            continue
        block = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", name)
        bias = re.match(r"blocks\.(\d+)\.attn\.([qv])_bias$", name)
        if bias:
            continue  # folded below
        if block and block.group(2) in _VIT_BLOCK:
            out[f"vision_model.encoder.layers.{block.group(1)}.{_VIT_BLOCK[block.group(2)]}.{block.group(3)}"] = value
            continue
        raise UserError(f"unexpected ViT tensor {key} ({list(value.shape)}); not an EVA ViT block, embedding or bias")
    for key in [k for k in state if k.startswith(prefix) and k.endswith("attn.q_bias")]:
        layer = re.search(r"blocks\.(\d+)\.", key).group(1)
        v_key = key[: -len("q_bias")] + "v_bias"
        if v_key not in state:
            raise UserError(f"{key} has no matching {v_key}")
        q, v = state[key], state[v_key]
        out[f"vision_model.encoder.layers.{layer}.self_attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return out


def qformer_key(key: str) -> str | None:
    """The HF name of a LAVIS query-path tensor (query tokens, ln_vision, Q-Former embeddings norm and
    encoder layers), shared by stage-1 and stage-2 checkpoints; None for anything else."""
    if key == "query_tokens":
        return key
    if key.startswith("ln_vision."):
        return "vision_model.post_layernorm." + key[len("ln_vision."):]
    if key.startswith("Qformer.bert.embeddings.LayerNorm."):
        return "qformer.layernorm." + key[len("Qformer.bert.embeddings.LayerNorm."):]
    if key.startswith("Qformer.bert.encoder."):
        name = "qformer.encoder." + key[len("Qformer.bert.encoder."):]
        return re.sub(r"\.(attention|crossattention)\.self\.", r".\1.attention.", name)
    return None


def map_lavis(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Counter, str | None]:
    """(HF-named tensors, skipped tensors counted by reason, the projector prefix found)."""
    out = map_vision(state)
    skipped: Counter = Counter()
    projector = None
    for key, value in state.items():
        if key.startswith("visual_encoder."):
            continue
        if (reason := _skip_reason(key)) is not None:
            skipped[reason] += 1
        elif (name := qformer_key(key)) is not None:
            out[name] = value
        elif key.startswith(PROJECTOR_PREFIXES):
            found = key.split(".")[0] + "."
            if projector not in (None, found):
                raise UserError(f"the checkpoint has two projectors ({projector}* and {found}*)")
            projector = found
            out["language_projection." + key[len(found):]] = value
        else:
            raise UserError(f"unexpected tensor {key} ({list(value.shape)}) in a LAVIS BLIP-2 checkpoint")
    return out, skipped, projector


def vit_file_tensors(path: Path, num_layers: int) -> tuple[dict[str, torch.Tensor], int]:
    """An EVA ViT state dict from its own file (``--vision``), keys with or without ``visual_encoder.``.

    Blocks past ``num_layers`` are dropped (EVA ViT-g has 40; BLIP-2 uses the first 39, as LAVIS
    does) and so are its final norm / head; returns (tensors under ``visual_encoder.``, dropped).
    """
    state = state_dict_of(load_pth(path, "--vision"), path, "--vision")
    kept: dict[str, torch.Tensor] = {}
    dropped = 0
    for key, value in state.items():
        name = key.removeprefix("visual_encoder.")
        block = re.match(r"blocks\.(\d+)\.", name)
        if (block and int(block.group(1)) >= num_layers) or re.match(VIT_FILE_SKIPPED, name):
            dropped += 1
            continue
        kept["visual_encoder." + name] = value
    return kept, dropped


def check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Size], source: str,
                  hints: dict[str, str]) -> None:
    """Every expected tensor present with its shape, nothing extra; errors name the tensor."""
    missing = [k for k in expected if k not in tensors]  # in module order: the ViT's problems first
    extra = sorted(set(tensors) - set(expected))
    bad = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k])]

    def hint(key: str) -> str:
        return next((f"; {h}" for prefix, h in hints.items() if key.startswith(prefix)), "")

    if bad:
        key = bad[0]
        raise UserError(f"{source}: tensor {key} has shape {list(tensors[key].shape)}, the model expects "
                        f"{list(expected[key])} ({len(bad)} mismatched){hint(key)}")
    if missing:
        raise UserError(f"{source}: {len(missing)} tensors missing, e.g. {missing[0]}{hint(missing[0])}")
    if extra:
        raise UserError(f"{source}: {len(extra)} tensors the model has no place for, e.g. {extra[0]}{hint(extra[0])}")
