"""``vltool merge``: write one standalone Hugging Face model folder from an artifact.

A ``vpg`` artifact becomes a ``Blip2ForConditionalGeneration`` folder (the transferred VPG on the
target LLM, with a ``Blip2Processor``) that plain transformers loads with the same outputs as
vltool's own forward. The folder is also a ``model`` artifact (its manifest lists every file,
the ``README.md`` model card of ``model_card`` among them); merging a ``model`` again says so and
changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from vltool.artifacts import ArtifactWriter, ensure_writable, read_artifact
from vltool.artifacts.fingerprint import fingerprint_path
from vltool.data.text_batches import end_of_text_id
from vltool.models import vlm
from vltool.models.chat_layout import prepare_chat_folder
from vltool.models.mma.layout import image_prompt
from vltool.models.mma.loading import load_adapters
from vltool.models.mma.merge import merge_lm, require_foldable_front_end
from vltool.sources.hf_blip2 import IMAGE_TOKEN, check_pad_token, pad_left, save_blip2_folder
from vltool.sources.open_model import open_vpg_artifact
from vltool.sources.resolve import classify
from vltool.stages.model_card import write_model_card
from vltool.training.progress import NullReporter, Reporter


def merge_vpg(artifact: Path, out: Path, force: bool) -> Path:

    # the VPG on its target, <image> at the trained id and the special-token rules applied (open_model)
    opened = open_vpg_artifact(classify(Path(artifact), str(artifact), "ARTIFACT"))
    model, tokenizer, manifest = opened.model, opened.tokenizer, opened.manifest
    # plain transformers stops where vltool's own generation does: at the trained end of text too

    stop = end_of_text_id(tokenizer, manifest.get("recipe", {}).get("end_of_text"))
    model.generation_config.eos_token_id = vlm.stop_ids(model, tokenizer, stop)
    # VL-Vicuna's chat turn: the template on the tokenizer, image tokens in the text (models.chat_layout)
    chat = prepare_chat_folder(model, tokenizer, manifest.get("recipe", {}))
    with ArtifactWriter(out, "model", force=force) as writer:
        save_blip2_folder(model, tokenizer, opened.processor, writer.path, prepend_image_tokens=chat is None)
        writer.manifest.update(chat or {})
        writer.add_input("artifact", str(Path(artifact).resolve()), fingerprint_path(Path(artifact)), what="vpg")
        writer.manifest["format"] = "Blip2ForConditionalGeneration"
        writer.manifest["metrics"] = {k: v for k, v in manifest.get("metrics", {}).items() if k.startswith("final_")}
        write_model_card(writer, manifest)  # README.md, inside the temp folder: listed in the manifest
    return out


def merge_adapters(artifact: Path, out: Path, modality: str, force: bool) -> Path:
    """Fold the MM-Adapters for one modality into the LLM's linear layers and write a standalone folder.

    Q-Former front end: a ``Blip2ForConditionalGeneration`` folder in LaVIN's layout. CLIP front
    end: the merged LLM as a plain ``LlamaForCausalLM`` / ``OPTForCausalLM`` folder, with LaVIN's
    visual front end (CLIP tower, its per-image vision adapters, the projection MLP) beside it in
    ``front_end/`` for vltool to feed images.
    """
    import json

    from safetensors.torch import save_file


    model, tokenizer, processor, config = load_adapters(artifact)
    if config["front_end"] == "qformer":
        require_foldable_front_end(model.front_end)  # before any work: vision adapters route per image
    result = merge_lm(model, modality)  # checks for NaN/inf, folds in place
    with ArtifactWriter(out, "model", force=force) as writer:
        if config["front_end"] == "qformer":
            fe = model.front_end
            # the base's <image> (open_model put it there; check_image_token refuses a mismatch on save)
            blip2 = vlm.assemble(fe.vision_model, fe.qformer, fe.query_tokens, fe.projector, result.lm,
                                 tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
            # LaVIN's layout puts the image tokens after "[BOS] Image: ", not before BOS as the stock
            # Blip2Processor would: the processor is saved without num_query_tokens (it adds none)
            # and the prompt text carries them (layout.image_prompt; README "Loading merged models").
            save_blip2_folder(blip2, tokenizer, processor, writer.path, prepend_image_tokens=False)
            writer.manifest["prompt_template"] = image_prompt("{prompt}", blip2.config.num_query_tokens)
            fmt = "Blip2ForConditionalGeneration"
        else:
            result.lm.save_pretrained(str(writer.path))
            check_pad_token(tokenizer, result.lm.config, str(writer.path))  # settled by open_model
            pad_left(tokenizer)  # batched prompts for generate()
            tokenizer.save_pretrained(str(writer.path))
            front = writer.path / "front_end"
            front.mkdir()
            save_file({k: v.detach().contiguous().cpu() for k, v in model.front_end.state_dict().items()},
                      str(front / "front_end.safetensors"))
            model.front_end.vision.config.save_pretrained(str(front))
            processor.save_pretrained(str(front))
            (front / "mma.json").write_text(json.dumps(config, indent=2) + "\n")
            fmt = type(result.lm).__name__
        writer.add_input("artifact", str(Path(artifact).resolve()), fingerprint_path(Path(artifact)), what="adapters")
        writer.manifest.update({"format": fmt, "layout": "lavin", "front_end": config["front_end"],
                                "modality": modality, "merge": result.message,
                                "note": "prompts follow LaVIN: [BOS] 'Image: ' + visual tokens (or 'Image: N/A'), "
                                        "then the prompt"})
        write_model_card(writer, read_artifact(Path(artifact), verify=False).manifest)
    return out


def run(artifact: Path, out: Path, modality: str = "image", force: bool = False,
        reporter: Reporter | None = None) -> Path:
    reporter = reporter or NullReporter()
    art = read_artifact(Path(artifact), kinds=("vpg", "adapters", "model"))
    if art.kind == "model":
        reporter.log(f"{artifact} is already a merged model; nothing to do")
        return Path(artifact)
    ensure_writable(out, force)
    if art.kind == "vpg":
        return merge_vpg(Path(artifact), out, force)
    return merge_adapters(Path(artifact), out, modality, force)
