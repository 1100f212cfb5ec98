"""BLIP-2 stage-1 Q-Formers: LAVIS ``blip2_pretrained.pth`` -> an HF ``Blip2ForImageTextRetrieval`` folder,
and loading such a folder as the start of the paper's training-from-scratch (TFS) baseline.

Why: VPGTrans's TFS baseline is NOT a random Q-Former. It is BLIP-2's stage 2 on the target LLM,
starting from a Q-Former that has had BLIP-2's stage-1 (vision-language representation)
pre-training -- the official configs load ``blip2_pretrained.pth`` -- with a random projector
(PAPERS.md 1). A random Q-Former is a separately named ablation (``--qformer random``).

Output format (decided here): a stage-1 checkpoint has no LLM and no projector, so it cannot be a
``Blip2ForConditionalGeneration``. It is exactly what transformers calls
``Blip2ForImageTextRetrieval`` (the class of Salesforce/blip2-itm-vit-g, itself converted from
the stage-1 LAVIS weights): ViT + ``ln_vision`` (``vision_model.post_layernorm``), query tokens,
the Q-Former with its text side (``embeddings.*``, text FFN ``intermediate`` / ``output``) and the
contrastive / matching heads (``vision_projection``, ``text_projection``, ``itm_head``). So the
converted folder is a plain HF model (loadable with ``Blip2ForImageTextRetrieval.from_pretrained``)
and the hub's stage-1 model (alias ``blip2-stage1``) is usable as it is. Left out, counted in the
report: the Q-Former's LM head ``Qformer.cls.*`` (image-grounded generation only) and the ITC
temperature ``temp`` (transformers' class has no place for either). No tokenizer is written:
LAVIS's is bert-base-uncased plus a ``[DEC]`` token, and vltool needs none of the text side.

Loading for TFS (``load_stage1``) keeps only what stage 2 trains: the Q-Former's query path
(its config with ``use_qformer_text_input=False``, i.e. no text FFN), the query tokens and
``ln_vision``. The ViT stays the ``--src`` model's (frozen, as in BLIP-2); because ``ln_vision``
and the Q-Former were trained on a particular ViT, a stage-1 folder whose ViT differs from the
source's is refused.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.errors import UserError
from vltool.sources.hf_blip2 import read_tensors
from vltool.sources.lavis import PROJECTOR_PREFIXES, check_tensors, map_vision, qformer_key
from vltool.sources.resolve import locate
from vltool.sources.weight_files import load_or_explain

STAGE1_ARCH = "Blip2ForImageTextRetrieval"
_HEADS = {"vision_proj.": "vision_projection.", "text_proj.": "text_projection.", "itm_head.": "itm_head."}
_SKIPPED = [
    (r"^Qformer\.cls\.", "Q-Former LM head (image-grounded generation only)"),
    (r"^temp$", "ITC temperature (no place in Blip2ForImageTextRetrieval)"),
    (r"^Qformer\.bert\.embeddings\.position_ids$", "position ids (rebuilt by transformers)"),
]
_TEXT_FFN = re.compile(r"\.layer\.\d+\.(intermediate|output)\.")
RANDOM = "random"


def is_stage1(state: dict[str, torch.Tensor]) -> bool:
    """A stage-1 checkpoint: a Q-Former, no projector and no LLM."""
    return (any(k.startswith("Qformer.") for k in state)
            and not any(k.startswith(PROJECTOR_PREFIXES) for k in state)
            and not any(k.startswith(("opt_model.", "llama_model.", "t5_model.", "llm_model.")) for k in state))


def map_stage1(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Counter]:
    """LAVIS stage-1 names -> ``Blip2ForImageTextRetrieval`` names; (tensors, skipped counted by reason)."""
    out = map_vision(state)
    skipped: Counter = Counter()
    for key, value in state.items():
        if key.startswith("visual_encoder."):
            continue
        reason = next((why for pattern, why in _SKIPPED if re.search(pattern, key)), None)
        head = next((p for p in _HEADS if key.startswith(p)), None)
        if reason is not None:
            skipped[reason] += 1
        elif (name := qformer_key(key)) is not None:
            out[name] = value
        elif key.startswith("Qformer.bert.embeddings."):  # the text side stage 1 keeps
            out["embeddings." + key[len("Qformer.bert.embeddings."):]] = value
        elif head is not None:
            out[_HEADS[head] + key[len(head):]] = value
        else:
            raise UserError(f"unexpected tensor {key} ({list(value.shape)}) in a LAVIS BLIP-2 stage-1 checkpoint")
    return out, skipped


def _fix_buffers(model: nn.Module) -> None:
    """Non-persistent buffers of a model built on the meta device (never in a checkpoint)."""
    for module in model.modules():
        if getattr(module, "position_ids", None) is not None and module.position_ids.is_meta:
            module.position_ids = torch.arange(module.position_ids.shape[-1]).expand((1, -1))


def convert_stage1(state: dict[str, torch.Tensor], checkpoint: Path, out: Path, vision_cfg: Any, qformer_cfg: Any,
                   image_processor: Any, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Write a ``Blip2ForImageTextRetrieval`` folder from a stage-1 state dict (ViT already merged in)."""
    from transformers import Blip2Config, Blip2ForImageTextRetrieval

    tensors, skipped = map_stage1(state)
    for needed in ("query_tokens", "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                   "vision_projection.weight"):
        if needed not in tensors:
            raise UserError(f"{checkpoint}: a stage-1 checkpoint needs {needed} (LAVIS: "
                            f"{_lavis_name(needed)}), which it lacks")
    words, positions = tensors["embeddings.word_embeddings.weight"], tensors["embeddings.position_embeddings.weight"]
    qformer = {**qformer_cfg.to_dict(), "use_qformer_text_input": True, "vocab_size": words.shape[0],
               "max_position_embeddings": positions.shape[0]}
    for key in ("model_type", "transformers_version"):
        qformer.pop(key, None)
    config = Blip2Config(vision_config=vision_cfg.to_dict(), qformer_config=qformer,
                         num_query_tokens=tensors["query_tokens"].shape[1],
                         image_text_hidden_size=tensors["vision_projection.weight"].shape[0])
    config.architectures = [STAGE1_ARCH]
    with torch.device("meta"):
        model = Blip2ForImageTextRetrieval(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    hints = {"vision_model.": "pass --vision-config FILE.json (a Blip2VisionConfig dict) for a ViT other than "
                              "EVA ViT-g/14",
             "qformer.": "pass --qformer-config FILE.json (a Blip2QFormerConfig dict) for a Q-Former other than "
                         "BERT-base with cross-attention every 2nd layer"}
    check_tensors(tensors, expected, str(checkpoint), hints)
    fp32 = ("qformer.", "query_tokens", "embeddings.")  # transformers keeps the Q-Former side in fp32
    model.load_state_dict({k: v.to(torch.float32 if k.startswith(fp32) else dtype) for k, v in tensors.items()},
                          assign=True)
    _fix_buffers(model)
    for part in (config, config.vision_config, config.qformer_config, config.text_config):
        part._name_or_path = ""
    model.save_pretrained(str(out))
    image_processor.save_pretrained(str(out))
    return {"format": STAGE1_ARCH, "tensors_mapped": len(tensors), "tensors_skipped": dict(skipped),
            "num_query_tokens": config.num_query_tokens, "qformer_vocab": int(words.shape[0]),
            "image_text_hidden_size": config.image_text_hidden_size}


def _lavis_name(hf: str) -> str:
    table = {"query_tokens": "query_tokens", "embeddings.word_embeddings.weight":
             "Qformer.bert.embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight":
             "Qformer.bert.embeddings.position_embeddings.weight", "vision_projection.weight": "vision_proj.weight"}
    return table.get(hf, hf)


# --- loading a stage-1 Q-Former as the TFS start ---------------------------------------------------


@dataclass
class Stage1QFormer:
    """What the TFS baseline inherits from a stage-1 model: Q-Former (query path), queries, ln_vision."""

    qformer: nn.Module  # Blip2QFormerModel, use_qformer_text_input=False
    query_tokens: torch.Tensor  # [1, Q, d]
    ln_vision: dict[str, torch.Tensor]  # weight, bias
    path: Path
    spec: str


def is_stage1_folder(folder: Path) -> bool:
    """Whether ``folder`` is an HF BLIP-2 stage-1 model (``Blip2ForImageTextRetrieval``)."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except ValueError:
        return False
    return data.get("model_type") == "blip-2" and STAGE1_ARCH in (data.get("architectures") or [])


def _vit_probe_keys(num_layers: int) -> tuple[str, ...]:
    last = num_layers - 1
    return ("vision_model.embeddings.patch_embedding.weight", "vision_model.embeddings.position_embedding",
            f"vision_model.encoder.layers.{last}.mlp.fc2.weight")


def load_stage1(spec: str, vision_model: nn.Module | None = None, flag: str = "--qformer") -> Stage1QFormer:
    """A stage-1 folder (alias, hub id or path) as a TFS start; refuses one trained on another ViT.

    ``vision_model``: the frozen ViT the run uses (the source's); its patch embedding, position
    embedding and last block's FFN must match the stage-1 model's (up to fp16 rounding).
    """
    from transformers import Blip2Config, Blip2QFormerModel


    folder = locate(spec, "qformer", flag)[0]
    if folder.is_file():
        raise UserError(f"{flag} {spec} is a checkpoint file; convert it first with 'vltool convert {spec} --out DIR' "
                        f"(a LAVIS blip2_pretrained.pth becomes a {STAGE1_ARCH} folder) and pass DIR")
    if not is_stage1_folder(folder):
        raise UserError(f"{flag} {spec}: {folder} is not a BLIP-2 stage-1 model (config.json architectures "
                        f"{STAGE1_ARCH}); pass a converted blip2_pretrained.pth, blip2-stage1, or '{RANDOM}' for a "
                        f"randomly initialised Q-Former (ablation)")
    config = Blip2Config.from_pretrained(str(folder))
    probes = _vit_probe_keys(config.vision_config.num_hidden_layers) if vision_model is not None else ()
    tensors = load_or_explain(lambda: read_tensors(folder, lambda k: k.startswith(("qformer.", "vision_model.post_layernorm."))
                                                   or k == "query_tokens" or k in probes), folder)
    qformer_cfg = config.qformer_config.to_dict()
    qformer_cfg.update(use_qformer_text_input=False)
    for key in ("model_type", "transformers_version"):
        qformer_cfg.pop(key, None)
    qformer = Blip2QFormerModel(type(config.qformer_config)(**qformer_cfg))
    state = {k.removeprefix("qformer."): v.float() for k, v in tensors.items()
             if k.startswith("qformer.") and not _TEXT_FFN.search(k)}
    expected = qformer.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise UserError(f"{flag} {spec}: the stage-1 model lacks {len(missing)} Q-Former tensors, e.g. {missing[0]}")
    qformer.load_state_dict(state)
    if "query_tokens" not in tensors:
        raise UserError(f"{flag} {spec}: the stage-1 model has no query_tokens")
    ln = {k.removeprefix("vision_model.post_layernorm."): v.float() for k, v in tensors.items()
          if k.startswith("vision_model.post_layernorm.")}
    if vision_model is not None:
        _check_same_vit(vision_model, tensors, probes, spec, flag)
        width = vision_model.config.hidden_size
        if qformer.config.encoder_hidden_size != width:
            raise UserError(f"{flag} {spec}: its Q-Former cross-attends to {qformer.config.encoder_hidden_size}-wide "
                            f"image features, the source ViT is {width} wide")
    return Stage1QFormer(qformer.eval(), tensors["query_tokens"].float(), ln, folder, spec)


def _check_same_vit(vision_model: nn.Module, tensors: dict[str, torch.Tensor], probes: tuple[str, ...],
                    spec: str, flag: str) -> None:
    ours = vision_model.state_dict()
    for key in probes:
        mine = ours.get(key.removeprefix("vision_model."))
        theirs = tensors.get(key)
        if mine is None or theirs is None or mine.shape != theirs.shape:
            raise UserError(f"{flag} {spec}: its ViT has another shape than the source's ({key}); the TFS baseline "
                            f"keeps the source's frozen ViT, so the stage-1 Q-Former must be trained on it")
        if not torch.allclose(mine.float(), theirs.float(), rtol=1e-2, atol=1e-3):
            raise UserError(f"{flag} {spec}: its ViT differs from the source's ({key}); its Q-Former and ln_vision "
                            f"were trained on another ViT, and the TFS baseline keeps the source's frozen ViT")
