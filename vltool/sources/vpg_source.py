"""Loading what VPGTrans transfers FROM (a BLIP-2 model or a vpg artifact) and what it transfers TO.

A source gives the VPG (ViT, ln_vision, Q-Former, query tokens), the projector and the input
word embeddings + tokenizer of the LM that projector fed (the word converter maps FROM those);
the source LLM itself is never loaded (``hf_blip2`` reads only the tensors used).
A vpg artifact stores only what was trained and points at its frozen ViT and LLM by path and
fingerprint; loading it checks both fingerprints so a changed model is refused, not used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.artifacts import read_artifact
from vltool.artifacts.fingerprint import fingerprint_path
from vltool.errors import UserError
from vltool.sources.hf_blip2 import load_blip2_parts, read_input_embeddings
from vltool.sources.resolve import SourceKind, resolve_source
from vltool.sources.stage1 import is_stage1_folder


@dataclass
class VPGSource:
    vision_model: nn.Module  # Blip2VisionModel; its post_layernorm is LAVIS's ln_vision
    qformer: nn.Module
    query_tokens: torch.Tensor
    projector: nn.Linear
    tokenizer: Any
    image_processor: Any
    vision_ref: dict[str, str]  # {"source": path, "fingerprint": ...}
    origin: str
    embeddings: Callable[[], torch.Tensor] | None = None  # loads them on first use (only the converter needs them)
    _lm_embeddings: torch.Tensor | None = None
    scratch: dict[str, str] | None = None  # set by a from-scratch run: the stage-1 Q-Former it started from

    @property
    def lm_embeddings(self) -> torch.Tensor:
        """Input word embeddings of the LM the projector fed, loaded by transformers on first use."""
        if self._lm_embeddings is None:
            assert self.embeddings is not None
            self._lm_embeddings = self.embeddings()
        return self._lm_embeddings


def load_blip2_folder(path: Path) -> VPGSource:
    parts = load_blip2_parts(Path(path))
    return VPGSource(
        vision_model=parts.vision_model, qformer=parts.qformer, query_tokens=parts.query_tokens.detach().clone(),
        projector=parts.projector, embeddings=lambda: parts.lm_input_embeddings, tokenizer=parts.tokenizer,
        image_processor=parts.image_processor,
        vision_ref={"source": str(Path(path).resolve()), "fingerprint": fingerprint_path(Path(path))},
        origin=str(path),
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
    from transformers import AutoImageProcessor, AutoTokenizer, Blip2QFormerConfig, Blip2QFormerModel

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
    source = VPGSource(
        vision_model=base.vision_model, qformer=qformer.eval(), query_tokens=tensors["query_tokens"],
        projector=projector, embeddings=lambda: read_input_embeddings(llm_src),
        tokenizer=AutoTokenizer.from_pretrained(str(llm_src)),
        image_processor=AutoImageProcessor.from_pretrained(str(path / "processor")),
        vision_ref=inputs["vision"], origin=str(path),
    )
    return source, art.manifest, llm_src


def load_source(spec: str) -> VPGSource:
    """--src: an alias, an HF BLIP-2 folder or a vpg artifact."""
    found = resolve_source(spec)
    if found.kind is SourceKind.LAVIS_PTH:
        raise UserError(f"--src {spec} is a LAVIS checkpoint; convert it first with "
                        f"'vltool convert {spec} --dst LLM --out DIR' and pass DIR")
    if found.kind is SourceKind.ARTIFACT:
        return load_vpg_artifact(found.path)[0]

    if is_stage1_folder(found.path):
        raise UserError(f"--src {spec} is a BLIP-2 stage-1 Q-Former (no projector, no LLM): it is the start of the "
                        f"training-from-scratch baseline (--from-scratch --qformer {spec}), not a VPG to transfer")
    return load_blip2_folder(found.path)
