"""Building an MMA model from its base (a vpg artifact or an HF BLIP-2 folder) and an adapters artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vltool.artifacts import is_artifact, read_artifact
from vltool.artifacts.fingerprint import fingerprint_path
from vltool.errors import NotImplementedYet, UserError
from vltool.models.mma.build import build_qformer_mma, settings_from
from vltool.models.mma.mllm import MMAModel


def load_base(spec: str, front_end: str) -> tuple[Any, Any, Any, dict[str, str]]:
    """(blip2 model, tokenizer, image processor, reference) for the Q-Former front end."""
    from transformers import AutoImageProcessor, AutoTokenizer, Blip2ForConditionalGeneration

    from vltool.models import vlm
    from vltool.sources.vpg_source import _folder, load_target, load_vpg_artifact

    if front_end != "qformer":
        raise NotImplementedYet("tune-mma training with the clip front end is not implemented yet; "
                                "--dry-run works, and --front-end qformer trains")
    path = _folder(spec, "source", "--model")
    if is_artifact(path):
        if read_artifact(path, verify=False).kind != "vpg":
            raise UserError(f"--model {spec} must be a vpg artifact or an HF BLIP-2 folder for the qformer front end")
        source, _, llm_path = load_vpg_artifact(path)
        lm, tokenizer, _ = load_target(str(llm_path))
        blip2 = vlm.assemble(source.vision_model, source.qformer, source.query_tokens, source.projector, lm,
                             tokenizer.convert_tokens_to_ids("<image>"))
        processor = source.image_processor
    elif (path / "config.json").is_file():
        blip2 = Blip2ForConditionalGeneration.from_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        processor = AutoImageProcessor.from_pretrained(str(path))
    else:
        raise UserError(f"--model {spec}: expected a vpg artifact or an HF BLIP-2 folder")
    return blip2.eval(), tokenizer, processor, {"source": str(Path(path).resolve()), "fingerprint": fingerprint_path(path)}


def build(blip2, adapter: dict[str, Any], placement: str, vision: bool) -> MMAModel:
    """The Q-Former-front-end MMA model (adapters injected, only the MMA tensors trainable).

    Vision adapters stay refused on this path until ``vltool merge`` checks
    ``merge.require_foldable_front_end`` (they cannot be folded into a plain BLIP-2 ViT, and the
    current merge stage would drop them silently); ``build.build_qformer_mma`` supports them.
    """
    if vision:
        raise NotImplementedYet("vision-side MM-Adapters with the qformer front end are not wired into the "
                                "stages yet; set adapter.vision=false")
    return build_qformer_mma(blip2, settings_from(adapter), placement, vision)


def set_trainable(model: MMAModel) -> None:
    """Only adapters, routers, the modality token and the visual projection train."""
    model.set_trainable()


def trainable_state(model: MMAModel) -> dict[str, Any]:
    return model.trainable_state()


def load_adapters(path: Path) -> tuple[MMAModel, Any, Any, dict]:
    """An adapters artifact back as a ready MMA model (base checked by fingerprint)."""
    from vltool.sources.vpg_source import check_reference

    art = read_artifact(path, kinds=("adapters",))
    config = art.json("configs/mma.json")
    base_ref = art.manifest["inputs"]["base"]
    check_reference(base_ref, "base model", path)
    blip2, tokenizer, processor, _ = load_base(base_ref["source"], config["front_end"])
    model = build(blip2, config["adapter"], config["adapter"]["placement"], config["adapter"]["vision"])
    model.load_trainable(art.tensors("adapters.safetensors"), f"adapters artifact {path}")
    return model.eval(), tokenizer, processor, config
