"""Loading what VPGTrans transfers FROM (a BLIP-2 model or a vpg artifact) and what it transfers TO.

A source gives the VPG (ViT, ln_vision, Q-Former, query tokens), the projector and the input
word embeddings + tokenizer of the LM that projector fed (the word converter maps FROM those).
A vpg artifact stores only what was trained and points at its frozen ViT and LLM by path and
fingerprint; loading it checks both fingerprints so a changed model is refused, not used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.artifacts import is_artifact, read_artifact
from vltool.artifacts.fingerprint import fingerprint_path
from vltool.errors import UserError
from vltool.sources.aliases import resolve_alias


@dataclass
class VPGSource:
    vision_model: nn.Module  # Blip2VisionModel; its post_layernorm is LAVIS's ln_vision
    qformer: nn.Module
    query_tokens: torch.Tensor
    projector: nn.Linear
    lm_embeddings: torch.Tensor  # input word embeddings of the LM the projector fed
    tokenizer: Any
    image_processor: Any
    vision_ref: dict[str, str]  # {"source": path, "fingerprint": ...}
    origin: str


def _config_type(path: Path) -> str | None:
    config = path / "config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("model_type")


def _folder(spec: str, role: str, flag: str) -> Path:
    path = Path(spec).expanduser()
    if path.exists():
        return path
    return resolve_alias(spec, role, flag)


def load_blip2_folder(path: Path) -> VPGSource:
    from transformers import AutoImageProcessor, AutoTokenizer, Blip2ForConditionalGeneration

    model = Blip2ForConditionalGeneration.from_pretrained(str(path)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    processor = AutoImageProcessor.from_pretrained(str(path))
    return VPGSource(
        vision_model=model.vision_model, qformer=model.qformer, query_tokens=model.query_tokens.detach().clone(),
        projector=model.language_projection,
        lm_embeddings=model.language_model.get_input_embeddings().weight.detach().clone(),
        tokenizer=tokenizer, image_processor=processor,
        vision_ref={"source": str(path.resolve()), "fingerprint": fingerprint_path(path)}, origin=str(path),
    )


def check_reference(ref: dict[str, str], what: str, artifact: Path) -> Path:
    """The frozen model an artifact points at, if it is still there and unchanged."""
    path = Path(ref["source"])
    if not path.exists():
        raise UserError(f"artifact {artifact} needs its {what} at {path}, which does not exist")
    if fingerprint_path(path) != ref["fingerprint"]:
        raise UserError(f"artifact {artifact} was trained with the {what} at {path}, but that model has changed "
                        f"since (fingerprint mismatch)")
    return path


def load_vpg_artifact(path: Path) -> tuple[VPGSource, dict, Path]:
    """A vpg artifact as a source: (the VPG with its trained tensors, its manifest, its LLM folder)."""
    from transformers import (
        AutoImageProcessor,
        AutoModelForCausalLM,
        AutoTokenizer,
        Blip2QFormerConfig,
        Blip2QFormerModel,
    )

    art = read_artifact(path, kinds=("vpg",))
    inputs = art.manifest["inputs"]
    vision_src = check_reference(inputs["vision"], "vision encoder", path)
    llm_src = check_reference(inputs["llm"], "LLM", path)
    base = load_blip2_folder(vision_src)
    tensors = art.tensors("vpg.safetensors")
    qformer = Blip2QFormerModel(Blip2QFormerConfig(**art.json("configs/qformer.json")))
    qformer.load_state_dict({k.removeprefix("qformer."): v for k, v in tensors.items() if k.startswith("qformer.")})
    base.vision_model.post_layernorm.load_state_dict(
        {k.removeprefix("ln_vision."): v for k, v in tensors.items() if k.startswith("ln_vision.")})
    proj_w = tensors["projector.weight"]
    projector = nn.Linear(proj_w.shape[1], proj_w.shape[0])
    projector.load_state_dict({"weight": proj_w, "bias": tensors["projector.bias"]})
    lm = AutoModelForCausalLM.from_pretrained(str(llm_src))
    source = VPGSource(
        vision_model=base.vision_model, qformer=qformer.eval(), query_tokens=tensors["query_tokens"],
        projector=projector, lm_embeddings=lm.get_input_embeddings().weight.detach().clone(),
        tokenizer=AutoTokenizer.from_pretrained(str(llm_src)),
        image_processor=AutoImageProcessor.from_pretrained(str(path / "processor")),
        vision_ref=inputs["vision"], origin=str(path),
    )
    return source, art.manifest, llm_src


def load_source(spec: str) -> VPGSource:
    """--src: an alias, an HF BLIP-2 folder or a vpg artifact."""
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix in (".pth", ".pt", ".bin"):
        raise UserError(f"--src {spec} is a checkpoint file; convert a LAVIS .pth first with "
                        f"'vltool convert {spec} --llm LLM --out DIR' and pass DIR")
    folder = _folder(spec, "source", "--src")
    if is_artifact(folder):
        return load_vpg_artifact(folder)[0]
    kind = _config_type(folder)
    if kind != "blip-2":
        raise UserError(f"--src {spec} is not a BLIP-2 model (config model_type {kind!r}); expected an HF "
                        f"Blip2ForConditionalGeneration folder, a vpg artifact or a source alias")
    return load_blip2_folder(folder)


def load_target(spec: str) -> tuple[nn.Module, Any, Path]:
    """--dst: an alias or an HF causal-LM folder with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _folder(spec, "target", "--dst")
    kind = _config_type(folder)
    if kind is None:
        raise UserError(f"--dst {spec}: {folder} has no config.json; expected a Hugging Face causal-LM folder")
    if kind == "blip-2":
        raise UserError(f"--dst {spec} is a BLIP-2 model; --dst takes the plain causal LM to give eyes to")
    lm = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return lm, tokenizer, folder
