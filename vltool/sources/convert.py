"""``vltool convert``: a LAVIS BLIP-2 ``.pth`` + an LLM -> an HF ``Blip2ForConditionalGeneration`` folder.

Why: VPGTrans and LAVIS release ``.pth`` files that transformers cannot read, and users asked for
an HF export (PAPERS.md 1). The folder written here is loadable by plain transformers
(``Blip2ForConditionalGeneration`` + ``Blip2Processor``) and is a valid ``--src`` for a transfer.

Module shapes come from the known architecture (EVA ViT-g/14 + BERT-base Q-Former, shipped in
``sources/arch``) unless ``vision_config`` / ``qformer_config`` JSON files (Blip2VisionConfig /
Blip2QFormerConfig dicts) say otherwise; the number of query tokens comes from the checkpoint.
Every tensor is checked against those shapes before anything is written, and the projector's
output width against the LLM. The caller (the CLI) owns atomic writing and ``--force``.

A stage-1 checkpoint (LAVIS ``blip2_pretrained.pth``: the pre-trained Q-Former, no LLM, no
projector) converts without ``--dst`` to an HF ``Blip2ForImageTextRetrieval`` folder, the start of
the paper's training-from-scratch baseline (``transfer --from-scratch --qformer DIR``); see
``sources.stage1``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.errors import UserError
from vltool.sources.hf_blip2 import assemble_blip2, save_blip2_folder
from vltool.sources.lavis import check_tensors, load_pth, map_lavis, state_dict_of, vit_file_tensors
from vltool.sources.open_model import open_target
from vltool.sources.resolve import resolve_target
from vltool.sources.stage1 import STAGE1_ARCH, convert_stage1, is_stage1

ARCH_DIR = Path(__file__).resolve().parent / "arch"
DEFAULT_ARCH = "blip2-opt-2.7b"  # its vision/qformer sections are EVA ViT-g/14 and the BERT-base Q-Former
# LAVIS's blip_image_eval preprocessing (OpenAI CLIP statistics, bicubic), as Salesforce's HF folders
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _json_config(path: Path | None, flag: str, default: dict[str, Any]) -> dict[str, Any]:
    if path is None:
        return dict(default)
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot read ({err.strerror})") from None
    except ValueError as err:
        raise UserError(f"{flag} {path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{flag} {path}: expected a JSON object (a config dict)")
    return data


def module_configs(vision_config: Path | None = None, qformer_config: Path | None = None) -> tuple[Any, Any]:
    """(Blip2VisionConfig, Blip2QFormerConfig): the known architecture unless JSON files override."""
    from transformers import Blip2QFormerConfig, Blip2VisionConfig

    known = json.loads((ARCH_DIR / f"{DEFAULT_ARCH}.json").read_text())
    vision = _json_config(vision_config, "--vision-config", known["vision"])
    qformer = _json_config(qformer_config, "--qformer-config", known["qformer"])
    for data in (vision, qformer):
        data.pop("model_type", None)
        data.pop("transformers_version", None)
    try:
        vision_cfg = Blip2VisionConfig(**vision)
        qformer_cfg = Blip2QFormerConfig(**{**qformer, "encoder_hidden_size": vision_cfg.hidden_size})
    except (TypeError, ValueError) as err:
        raise UserError(f"invalid vision / Q-Former config: {err}") from None
    return vision_cfg, qformer_cfg


def _meta_modules(vision_cfg: Any, qformer_cfg: Any, num_query_tokens: int, llm_width: int) -> dict[str, nn.Module]:
    from transformers import Blip2QFormerModel, Blip2VisionModel

    with torch.device("meta"):
        return {"vision_model": Blip2VisionModel(vision_cfg), "qformer": Blip2QFormerModel(qformer_cfg),
                "language_projection": nn.Linear(qformer_cfg.hidden_size, llm_width)}


def _expected_shapes(modules: dict[str, nn.Module], num_query_tokens: int, qformer_width: int) -> dict[str, Any]:
    shapes = {f"{name}.{k}": v.shape for name, module in modules.items() for k, v in module.state_dict().items()}
    shapes["query_tokens"] = torch.Size([1, num_query_tokens, qformer_width])
    return shapes


def image_processor_for(vision_cfg: Any) -> Any:
    from transformers import BlipImageProcessor

    size = vision_cfg.image_size
    return BlipImageProcessor(size={"height": size, "width": size}, image_mean=CLIP_MEAN, image_std=CLIP_STD,
                              resample=3, do_convert_rgb=True)


def convert_lavis(checkpoint: Path, llm: str | None, out: Path, *, vision_config: Path | None = None,
                  qformer_config: Path | None = None, vit: Path | None = None,
                  dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Convert and write ``out`` (created if needed); returns a report of what was mapped / skipped.

    A stage-1 checkpoint (``blip2_pretrained.pth``: Q-Former, no projector, no LLM) becomes a
    ``Blip2ForImageTextRetrieval`` folder instead (``sources.stage1``) and takes no ``llm``.
    """
    checkpoint = Path(checkpoint)
    state = state_dict_of(load_pth(checkpoint), checkpoint)
    vision_cfg, qformer_cfg = module_configs(vision_config, qformer_config)
    vit_source = str(checkpoint)
    dropped_vit = 0
    if vit is not None:
        vit_tensors, dropped_vit = vit_file_tensors(Path(vit), vision_cfg.num_hidden_layers)
        state = {k: v for k, v in state.items() if not k.startswith("visual_encoder.")} | vit_tensors
        vit_source = str(vit)
    elif not any(k.startswith("visual_encoder.") for k in state):
        raise UserError(f"{checkpoint} has no ViT weights (visual_encoder.*): LAVIS loads EVA ViT-g from its own "
                        f"file (eva_vit_g.pth); pass it with --vision PATH.pth")
    if is_stage1(state):
        if llm is not None:
            raise UserError(f"{checkpoint} is a BLIP-2 stage-1 checkpoint (a Q-Former, no projector, no LLM); drop "
                            f"--dst: it converts to a {STAGE1_ARCH} folder on its own")
        report = convert_stage1(state, checkpoint, Path(out), vision_cfg, qformer_cfg, image_processor_for(vision_cfg),
                                dtype)
        return {"checkpoint": str(checkpoint), "stage": 1, "vit_from": vit_source, "vit_blocks_dropped": dropped_vit,
                **report, "vision": {"hidden_size": vision_cfg.hidden_size, "layers": vision_cfg.num_hidden_layers},
                "notes": ["no tokenizer written: LAVIS's Q-Former text side uses bert-base-uncased plus a [DEC] "
                          "token; vltool uses only the query path (--from-scratch --qformer DIR)"]}
    if llm is None:
        raise UserError(f"{checkpoint} has a projector, so it is a stage-2 BLIP-2 checkpoint: pass --dst, the LLM "
                        f"it was trained with")
    tensors, skipped, projector_prefix = map_lavis(state)
    if projector_prefix is None:
        raise UserError(f"{checkpoint} has no projector (opt_proj / llama_proj / t5_proj) and no Q-Former; "
                        f"expected a LAVIS BLIP-2 checkpoint")
    if "query_tokens" not in tensors:
        raise UserError(f"{checkpoint} has no query_tokens tensor")
    num_query_tokens = tensors["query_tokens"].shape[1]

    target = resolve_target(llm, "--dst")
    from transformers import AutoConfig

    llm_width = AutoConfig.from_pretrained(str(target.path)).hidden_size
    proj = tensors.get("language_projection.weight")
    if proj is not None and proj.shape[0] != llm_width:
        raise UserError(f"{checkpoint}: {projector_prefix}weight outputs {proj.shape[0]} features but the LLM "
                        f"{llm} is {llm_width} wide")
    modules = _meta_modules(vision_cfg, qformer_cfg, num_query_tokens, llm_width)
    hints = {"vision_model.": "pass --vision-config FILE.json (a Blip2VisionConfig dict) for a ViT other than "
                              "EVA ViT-g/14",
             "qformer.": "pass --qformer-config FILE.json (a Blip2QFormerConfig dict) for a Q-Former other than "
                         "BERT-base with cross-attention every 2nd layer"}
    check_tensors(tensors, _expected_shapes(modules, num_query_tokens, qformer_cfg.hidden_size), str(checkpoint),
                  hints)

    for name, module in modules.items():
        prefix = name + "."
        keep_fp32 = name == "qformer"  # transformers keeps the Q-Former (and query tokens) in fp32
        module.load_state_dict({k[len(prefix):]: v.to(torch.float32 if keep_fp32 else dtype)
                                for k, v in tensors.items() if k.startswith(prefix)}, assign=True)

    # special tokens and <image> as every folder vltool writes has them (open_model)
    opened = open_target(llm, "--dst", dtype=dtype)
    language_model, tokenizer, index = opened.model, opened.tokenizer, opened.image_token_index
    model = assemble_blip2(modules["vision_model"], modules["qformer"],
                           nn.Parameter(tensors["query_tokens"].float()), modules["language_projection"],
                           language_model, index)
    save_blip2_folder(model, tokenizer, image_processor_for(vision_cfg), Path(out))
    return {
        "checkpoint": str(checkpoint), "llm": str(target.path), "vit_from": vit_source,
        "tensors_mapped": len(tensors), "tensors_skipped": dict(skipped), "vit_blocks_dropped": dropped_vit,
        "projector": projector_prefix.rstrip("."), "num_query_tokens": num_query_tokens,
        "image_token_index": index, "vision": {"hidden_size": vision_cfg.hidden_size,
                                               "layers": vision_cfg.num_hidden_layers},
        "qformer": {"hidden_size": qformer_cfg.hidden_size, "layers": qformer_cfg.num_hidden_layers},
        "notes": ["ln_vision: LAVIS uses LayerNorm eps 1e-5, transformers' BLIP-2 the vision config's "
                  f"{vision_cfg.layer_norm_eps} (the difference transformers' own conversion accepts)"],
    }
