"""Building an MMA model from its base and reading an adapters artifact back.

Two front ends (``--front-end``):

* ``qformer``: the base is a vltool ``vpg`` artifact or an HF BLIP-2 folder, whose ViT, Q-Former,
  query tokens and projector feed the adapted LLM (the card's VPGTrans -> MMA pipeline);
* ``clip``: LaVIN's own; the base is a causal LM (alias or HF folder) and ``--vision`` a
  transformers CLIP folder (a CLIPVisionModel or a whole CLIPModel) or the ``clip-vit-l14`` alias.

``Base`` carries what was loaded plus the fingerprinted references that an ``adapters``
artifact records, so reading the artifact back rebuilds exactly the model that was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.artifacts import read_artifact
from vltool.artifacts.fingerprint import fingerprint_path
from vltool.errors import UserError
from vltool.models.mma.build import build_clip_mma, build_qformer_mma, settings_from
from vltool.models.mma.mma_model import MMAModel
from vltool.sources.aliases import find_alias, resolve_alias
from vltool.sources.open_model import BLIP2, keep_small_tensors_fp32, open_target, resolve_model
from vltool.sources.open_model import open_model as open_any
from vltool.sources.resolve import read_config
from vltool.sources.vpg_source import check_reference
from vltool.sources.weight_files import load_or_explain


@dataclass
class Base:
    """A frozen base for MM-Adapters: the LLM, its tokenizer, an image processor, and references."""

    front_end: str
    lm: nn.Module
    tokenizer: Any
    processor: Any
    ref: dict[str, str]
    blip2: Any = None  # qformer: the whole BLIP-2 model (its lm is ``lm``)
    vision: nn.Module | None = None  # clip: the CLIP vision tower
    vision_ref: dict[str, str] | None = None


def _ref(path: Path) -> dict[str, str]:
    return {"source": str(Path(path).resolve()), "fingerprint": fingerprint_path(Path(path))}


def _qformer_base(spec: str, dtype: torch.dtype = torch.float32) -> Base:
    """A vpg artifact (assembled on its target) or an HF BLIP-2 folder, opened by ``open_model``:
    ``<image>`` and the special-token rules are those every merged folder will have."""

    found = resolve_model(spec, "source", "--model")
    try:
        opened = open_any(found, "source", "--model", dtype=dtype, kinds=(BLIP2,))
    except UserError:
        if found.artifact_kind in (None, "vpg", "model"):
            raise UserError(f"--model {spec}: expected a vpg artifact or an HF BLIP-2 folder for the qformer front "
                            f"end (for a plain LLM use --front-end clip with --vision)") from None
        raise
    blip2 = opened.model.eval()
    return Base("qformer", blip2.language_model, opened.tokenizer, opened.processor, _ref(found.path), blip2=blip2)


def _vision_folder(vision: str | None) -> Path:

    if not vision:
        raise UserError("the clip front end needs --vision: an HF CLIP folder (e.g. openai/clip-vit-large-patch14, "
                        "as LaVIN uses) or the alias clip-vit-l14")
    path = Path(vision).expanduser()
    if path.exists():
        return path
    if find_alias(vision, "vision"):
        return resolve_alias(vision, "vision", "--vision")
    raise UserError(f"--vision {vision}: no such folder or vision alias (known: clip-vit-l14)")


# LaVIN's own preprocessing of the CLIP front end (util/datasets.py of the official code): resize to
# 224 x 224 bicubic (no centre crop, aspect not kept), then timm's IMAGENET_DEFAULT_MEAN / _STD --
# not CLIP's statistics, nor the CLIP repository's shortest-side resize + centre crop.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def lavin_image_processor(size: int = 224):
    """An HF image processor doing exactly LaVIN's transform at ``size`` (the CLIP tower's image size)."""
    import transformers

    cls = getattr(transformers, "BlipImageProcessorPil", None) or transformers.BlipImageProcessor
    return cls(size={"height": size, "width": size}, resample=3, do_rescale=True, rescale_factor=1 / 255,
               do_normalize=True, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_convert_rgb=True)


def _clip_base(spec: str, vision: str | None, dtype: torch.dtype = torch.float32) -> Base:
    from transformers import CLIPVisionModel


    folder = _vision_folder(vision)
    if (read_config(folder) or {}).get("model_type") not in ("clip", "clip_vision_model"):
        raise UserError(f"--vision {vision}: {folder} is not a transformers CLIP folder (config.json with "
                        f"model_type clip or clip_vision_model)")
    tower = load_or_explain(lambda: CLIPVisionModel.from_pretrained(str(folder), dtype=dtype).eval(), folder)
    if dtype != torch.float32:
        keep_small_tensors_fp32(tower)
    processor = lavin_image_processor(tower.config.image_size)
    target = open_target(spec, "--model", dtype=dtype, image_token=False)  # LaVIN's layout has no <image>
    return Base("clip", target.model, target.tokenizer, processor, _ref(target.path), vision=tower,
                vision_ref=_ref(folder))


def load_base(spec: str, front_end: str, vision: str | None = None, dtype: torch.dtype = torch.float32) -> Base:
    """The frozen base of ``--front-end``: qformer (vpg artifact / BLIP-2 folder) or clip (LLM + CLIP),
    its frozen towers read in ``dtype`` (the one training stores them in; 1-D tensors stay fp32)."""
    if front_end == "qformer":
        return _qformer_base(spec, dtype)
    if front_end == "clip":
        return _clip_base(spec, vision, dtype)
    raise UserError(f"--front-end {front_end!r}: expected qformer or clip")


def build(base: Base, adapter: dict[str, Any], placement: str, vision_adapters: bool,
          visual_tokens: int = 6) -> MMAModel:
    """The MMA model on ``base``: adapters injected, only the MMA tensors trainable."""
    settings = settings_from(adapter)
    if base.front_end == "clip":
        return build_clip_mma(base.lm, base.vision, settings, placement, visual_tokens, vision_adapters)
    return build_qformer_mma(base.blip2, settings, placement, vision_adapters)


def set_trainable(model: MMAModel) -> None:
    """Only adapters, routers, the modality token and the visual projection train."""
    model.set_trainable()


def trainable_state(model: MMAModel) -> dict[str, Any]:
    return model.trainable_state()


def load_adapters(path: Path) -> tuple[MMAModel, Any, Any, dict]:
    """An adapters artifact back as a ready MMA model (base and vision tower checked by fingerprint)."""

    art = read_artifact(path, kinds=("adapters",))
    config = art.json("configs/mma.json")
    inputs = art.manifest["inputs"]
    check_reference(inputs["base"], "base model", path)
    vision = None
    if config["front_end"] == "clip":
        check_reference(inputs["vision"], "CLIP vision model", path)
        vision = inputs["vision"]["source"]
    base = load_base(inputs["base"]["source"], config["front_end"], vision)
    model = build(base, config["adapter"], config["adapter"]["placement"], config["adapter"]["vision"],
                  config.get("visual_tokens", 6))
    model.load_trainable(art.tensors("adapters.safetensors"), f"adapters artifact {path}")
    return model.eval(), base.tokenizer, base.processor, config
