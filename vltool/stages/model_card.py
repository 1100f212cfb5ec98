"""The README.md model card ``vltool merge`` writes into every merged folder, as HF repositories have.

It is written inside the artifact's temporary folder, so the manifest lists it with its sha256,
and says, from the manifests alone (nothing is loaded):

- YAML front matter the Hub reads: ``library_name: transformers``, ``base_model`` (the hub ids
  of the models it was built from, when known), ``tags``, ``pipeline_tag``;
- the base models: the VPG source (ViT + Q-Former), the target LLM, the CLIP tower, each with
  what was given (alias or path), its hub id and its fingerprint;
- the method (VPGTrans, LaVIN's MM-Adapters, or both in a chain) and a recipe summary, with the
  full resolved recipe folded below;
- the final metrics recorded by training, when there are any;
- how to load it: ``Blip2Processor`` + ``Blip2ForConditionalGeneration`` for a BLIP-2 folder, the
  plain causal LM + ``vltool predict`` for the CLIP front end.

A hub id is known when the alias names one (``opt2.7b`` as a source is
``Salesforce/blip2-opt-2.7b``) or when the path it was read from lies in a Hugging Face cache
(``models--org--name/snapshots/...``, which is also where a hub id given on the command line is
read from). A bare ``org/name`` spec is not taken at its word: it may be a relative folder. Local-only models are named by path in the
body and left out of ``base_model`` (the Hub only accepts repository ids there).

``pipeline_tag`` is ``image-to-text`` for BLIP-2 folders. A CLIP front-end merge is a plain
``LlamaForCausalLM`` / ``OPTForCausalLM`` folder whose images go through ``front_end/``, which no
Hub widget can feed, so its tag is ``text-generation`` (what transformers' pipeline can run on it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vltool import __version__
from vltool.sources.aliases import find_alias

_CACHE_REPO = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\]")

VPGTRANS = ("VPGTrans (Zhang et al. 2023, *Transfer Visual Prompt Generator across LLMs*): the visual prompt "
            "generator (ViT + Q-Former + query tokens) of an existing BLIP-2 model moved to a new LLM, "
            "with a word-converter-initialised projector warm-up and then VPG fine-tuning; the ViT and LLM "
            "stay frozen.")
MMA = ("LaVIN's Mixture-of-Modality Adaptation (Luo et al. 2023, *Cheap and Quick: Efficient "
       "Vision-Language Instruction Tuning for Large Language Models*): routed MM-Adapters trained on "
       "mixed text-only and image-text data on a frozen LLM, then folded (re-parameterised) into the "
       "LLM's linear layers for one modality, so the merged model runs at the base model's cost.")


@dataclass
class Base:
    """One model the merged folder was built from."""

    role: str
    given: str | None  # what the user passed (alias, hub id or path)
    path: str | None  # where it was read from
    hub_id: str | None
    fingerprint: str | None


def hub_id_of(given: str | None, path: str | None, role: str | None = None) -> str | None:
    """The hub repository a model came from, when the alias, the spec or its cache path says so."""
    if given:

        name = given.split("@", 1)[0]  # "alias@revision" pins a hub revision
        roles = [role] if role else ["source", "target", "vision"]
        for r in roles:
            alias = find_alias(name, r)
            if alias is not None and alias.hub_id:
                return alias.hub_id
    for text in (path, given):
        found = _CACHE_REPO.search(str(text or ""))
        if found:
            return f"{found.group(1)}/{found.group(2)}"
    return None


def _base(role: str, given: str | None, ref: dict | None, alias_role: str | None) -> Base:
    ref = ref or {}
    path = ref.get("source")
    return Base(role, given, path, hub_id_of(given, path, alias_role), ref.get("fingerprint"))


def _manifest(path: str | Path | None) -> dict | None:
    if not path:
        return None
    file = Path(path) / "manifest.json"
    try:
        return json.loads(file.read_text()) if file.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def vpg_bases(manifest: dict) -> list[Base]:
    recipe, inputs = manifest.get("recipe", {}), manifest.get("inputs", {})
    src = recipe.get("src")
    src_manifest = _manifest(inputs.get("src", {}).get("source"))
    if src_manifest and src_manifest.get("kind") == "vpg":  # transferred from a vpg artifact: name its source
        src = src_manifest.get("recipe", {}).get("src", src)
    return [_base("VPG source (BLIP-2 ViT + Q-Former)", src, inputs.get("vision"), "source"),
            _base("target LLM", recipe.get("dst") or inputs.get("llm", {}).get("alias"), inputs.get("llm"), "target")]


def describe(source: dict) -> dict[str, Any]:
    """Bases, methods and recipes (with the artifact each came from) behind a vpg / adapters artifact."""
    if source.get("kind") == "vpg":
        return {"bases": vpg_bases(source), "methods": ["VPGTrans"], "recipes": [("VPGTrans", source)]}
    recipe, inputs = source.get("recipe", {}), source.get("inputs", {})
    base_ref = inputs.get("base", {})
    base_manifest = _manifest(base_ref.get("source"))
    out: dict[str, Any] = {"bases": [], "methods": [], "recipes": []}
    if base_manifest and base_manifest.get("kind") == "vpg":  # VPGTrans, then MMA on top
        out = describe(base_manifest)
        out["bases"].append(_base("VPGTrans artifact (the MMA base)", recipe.get("model"), base_ref, None))
    elif recipe.get("front_end") == "clip":
        out["bases"].append(_base("LLM", recipe.get("model"), base_ref, "target"))
        out["bases"].append(_base("CLIP vision encoder", recipe.get("vision"), inputs.get("vision"), "vision"))
    else:
        out["bases"].append(_base("base BLIP-2 model (ViT + Q-Former + LLM)", recipe.get("model"), base_ref,
                                  "source"))
    out["methods"] = [*out["methods"], "LaVIN MMA"]
    out["recipes"] = [*out["recipes"], ("LaVIN MMA", source)]
    return out


def _recipe_summary(name: str, manifest: dict) -> list[str]:
    recipe = manifest.get("recipe", {})
    train, data = recipe.get("train", {}), recipe.get("data", {})
    rows = [f"- data: {', '.join(data.get('train') or []) or '?'}"
            + (f" (validation: {', '.join(data['val'])})" if data.get("val") else "")]
    metrics = manifest.get("metrics", {})
    schedule = f"at most {train['max_steps']} steps" if train.get("max_steps") else f"{train.get('epochs')} epochs"
    if name == "VPGTrans" and "finetune_steps" in metrics:
        ran = f"{metrics.get('warmup_steps', 0)} warm-up + {metrics['finetune_steps']} fine-tuning steps run"
    elif name == "VPGTrans" and "warmup_steps" in metrics:
        ran = f"{metrics['warmup_steps']} warm-up steps run (warm-up only)"
    else:
        ran = f"{metrics['steps']} steps run" if "steps" in metrics else ""
    rows.append(f"- optimisation: lr {train.get('lr')} ({train.get('schedule')}), batch {train.get('batch_size')}, "
                f"{schedule}" + (f" ({ran})" if ran else "")
                + f", weight decay {train.get('weight_decay')}, precision {manifest.get('precision', '?')}, "
                f"seed {manifest.get('seed', train.get('seed'))}, {manifest.get('world_size', 1)} process(es)")
    if name == "VPGTrans":
        conv, warm = recipe.get("converter", {}), recipe.get("warmup", {})
        rows.append(f"- warm-up: projector only, lr x{warm.get('lr_mult')}, "
                    + (f"{warm['max_steps']} steps" if warm.get("max_steps") else f"{warm.get('epochs')} epochs")
                    + "; projector init: " + (f"word converter ({conv.get('method')})" if conv.get("enabled")
                                              else "random (no converter)"))
        if recipe.get("from_scratch") and recipe.get("scratch_qformer") == "random":
            rows.append("- from scratch, random Q-Former (ablation): fresh Q-Former, query tokens and projector")
        elif recipe.get("from_scratch"):
            rows.append(f"- from scratch (the paper's baseline): stage-1 Q-Former, query tokens and ln_vision from "
                        f"{recipe.get('scratch_qformer')}, random projector")
        rows.append(f"- prompt: {recipe.get('prompt')!r}, caption length {recipe.get('max_text_tokens')} tokens")
    else:
        ad = recipe.get("adapter", {})
        bottleneck = ad.get("bottleneck", ad.get("dim"))  # manifests written before #24 say adapter.dim
        rows.append(f"- MM-Adapters: placement {ad.get('placement')}, bottleneck {bottleneck}, groups {ad.get('groups')}, "
                    f"router {'on' if ad.get('router') else 'off (shared adapter)'} (temperature "
                    f"{ad.get('temperature')}), vision adapters {'on' if ad.get('vision') else 'off'}; "
                    f"front end {recipe.get('front_end')}; max length {recipe.get('max_length')}")
        trainable, total = (manifest.get("metrics", {}).get(k) for k in ("trainable_params", "total_params"))
        if trainable:
            rows.append(f"- trainable parameters: {trainable:,}" + (f" of {total:,}" if total else ""))
    if manifest.get("command"):
        rows.append(f"- command: `{manifest['command']}`")
    return rows


def _final_metrics(source: dict, merged_metrics: dict) -> dict[str, Any]:
    metrics = dict(merged_metrics)
    for key, value in source.get("metrics", {}).items():
        if key.startswith(("final_", "after/")) and not isinstance(value, (dict, list)):
            metrics.setdefault(key, value)
    return metrics


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _template_expr(template: str) -> str:
    """A prompt template (``{prompt}`` and runs of ``<image>``) as a short Python expression."""
    parts = []
    for piece in re.split(r"((?:<image>)+|\{prompt\})", template):
        if not piece:
            continue
        if piece == "{prompt}":
            parts.append("prompt")
        elif piece.startswith("<image>") and piece == "<image>" * (len(piece) // 7):
            parts.append(f'"<image>" * {len(piece) // 7}')
        else:
            parts.append(json.dumps(piece))
    return " + ".join(parts)


def _how_to_load(where: str, fmt: str, layout: str | None, front_end: str | None,
                 template: str | None = None) -> list[str]:
    predict = ["With vltool (any front end, same generation as `vltool eval`):", "",
               "```bash", f"vltool predict {where} --image photo.jpg                        # caption",
               f'vltool predict {where} --image photo.jpg --prompt "Question: what is shown? Answer:"',
               "```"]
    if front_end == "clip":
        return [
            f"The folder is a plain `{fmt}` with the MM-Adapters folded in; LaVIN's visual front end (CLIP "
            "tower, its vision adapters, the projection MLP) is in `front_end/`, which vltool feeds images with.",
            "", "Text only, with plain transformers:", "", "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
            f'model = AutoModelForCausalLM.from_pretrained("{where}")',
            'inputs = tokenizer("Image: N/A Instruction: ...", return_tensors="pt")  # LaVIN\'s text-only layout',
            "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=30)[0], skip_special_tokens=True))",
            "```", "", *predict]
    code = ["```python", "from PIL import Image",
            "from transformers import Blip2ForConditionalGeneration, Blip2Processor", "",
            f'processor = Blip2Processor.from_pretrained("{where}")',
            f'model = Blip2ForConditionalGeneration.from_pretrained("{where}")',
            'image = Image.open("photo.jpg").convert("RGB")',
            'inputs = processor(images=image, text="Question: what is shown? Answer:", return_tensors="pt")',
            "out = model.generate(**inputs, max_new_tokens=30)",
            "print(processor.batch_decode(out, skip_special_tokens=True)[0].strip())", "```"]
    if layout == "vl-chat":  # VL-Vicuna's chat turn (vltool.models.chat_layout)
        chat = [*code[:7],
                'messages = [{"role": "user", "content": [{"type": "image"}, '
                '{"type": "text", "text": "Describe this image in detail."}]}]',
                "text = processor.tokenizer.apply_chat_template(messages, tokenize=False)  # BOS and image tokens",
                'inputs = processor(images=image, text=text, add_special_tokens=False, return_tensors="pt")',
                'out = model.generate(**inputs, max_new_tokens=160, stop_strings="###", tokenizer=processor.tokenizer)',
                'new = out[:, inputs["input_ids"].shape[1]:]',
                'print(processor.batch_decode(new, skip_special_tokens=True)[0].split("###")[0].strip())', "```"]
        return ["It was chat-tuned in VL-Vicuna's turn (`###Human: <Img>` + the visual tokens + "
                "`</Img> {instruction} ###Assistant: `, answers ending with `###`). The tokenizer's chat template "
                "writes that turn, image tokens included; the saved processor adds none of its own:", "", *chat,
                "", *predict]
    if layout == "lavin" and template and "{prompt}" in template:
        text = f"text = {_template_expr(template)}"
        code = [line if "processor(images" not in line else
                line.replace('text="Question: what is shown? Answer:"', "text=text") for line in code]
        code.insert(code.index('image = Image.open("photo.jpg").convert("RGB")') + 1, text)
        code.insert(code.index(text), 'prompt = "Question: what is shown? Answer:"')
        return ["It was instruction-tuned in LaVIN's prompt layout ([BOS] `Image: ` + the visual tokens, then "
                "the prompt; `Image: N/A` + the prompt without an image). The saved processor adds no image "
                "tokens of its own; the prompt text carries them:", "", *code, "", *predict]
    if layout == "lavin":
        return ["It was instruction-tuned in LaVIN's prompt layout ([BOS] `Image: ` + the visual tokens, or "
                "`Image: N/A` without an image, then the prompt), which the stock `Blip2Processor` does not "
                "build. The weights load with plain transformers:", "", *code[:6], "```", "",
                "and `vltool predict` (or `vltool.eval.predictors.load_predictor`) generates in that layout.",
                "", *predict]
    return ["With plain transformers:", "", *code, "", *predict]


def render(where: str, merged: dict, source: dict) -> str:
    """The card's text for a merged folder (its manifest ``merged``) made from artifact ``source``."""
    info = describe(source)
    bases: list[Base] = info["bases"]
    fmt, layout, front_end = merged.get("format", "?"), merged.get("layout"), merged.get("front_end")
    hub_ids = list(dict.fromkeys(b.hub_id for b in bases if b.hub_id))
    tags = ["vltool", "multimodal"]
    tags += ["blip-2"] if fmt == "Blip2ForConditionalGeneration" else []
    tags += ["vpgtrans"] if "VPGTrans" in info["methods"] else []
    tags += ["lavin", "mm-adapter", "mixture-of-modality"] if "LaVIN MMA" in info["methods"] else []
    tags += ["clip"] if front_end == "clip" else []
    pipeline = "text-generation" if front_end == "clip" else "image-to-text"
    front = ["---", "library_name: transformers", f"pipeline_tag: {pipeline}"]
    front += ["base_model:", *[f"- {h}" for h in hub_ids]] if hub_ids else []
    front += ["tags:", *[f"- {t}" for t in tags], "---", ""]
    method = " then ".join(info["methods"])
    llm = next((b for b in bases if "LLM" in b.role), None)
    llm_name = (llm.hub_id or llm.given or llm.path) if llm else "the LLM"
    lines = [*front, f"# {Path(where).name}", "",
             f"A `{fmt}` model built with {method} on **{llm_name}**, written by `vltool merge` "
             f"(vltool {__version__}).", ""]
    if merged.get("modality"):
        lines += [f"The MM-Adapters were folded with the **{merged['modality']}** modality's routing weights"
                  + (f" ({merged['merge']})" if merged.get("merge") else "") + ".", ""]
    lines += ["## Base models", "", "| part | given as | hub id | path | fingerprint |", "| --- | --- | --- | --- | --- |"]
    for b in bases:
        lines.append(f"| {b.role} | {b.given or ''} | {b.hub_id or '-'} | {b.path or ''} | "
                     f"{(b.fingerprint or '')[:16]} |")
    lines += ["", "## Method", ""]
    lines += [f"- {VPGTRANS}"] if "VPGTrans" in info["methods"] else []
    lines += [f"- {MMA}"] if "LaVIN MMA" in info["methods"] else []
    lines += ["", "## Recipe", ""]
    for name, manifest in info["recipes"]:
        lines += [f"{name}:", "", *_recipe_summary(name, manifest), ""]
        if manifest.get("recipe"):
            import yaml

            lines += ["<details><summary>resolved recipe</summary>", "", "```yaml",
                      yaml.safe_dump(manifest["recipe"], sort_keys=False).rstrip(), "```", "", "</details>", ""]
    lines += ["## Metrics", ""]
    metrics = _final_metrics(source, merged.get("metrics", {}))
    if metrics:
        lines += ["Final validation metrics recorded by training (before merging; the fold is exact up to "
                  "float rounding):", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(metrics.items())]
    else:
        lines += ["No validation metrics were recorded in training (no validation data); score it with "
                  f"`vltool eval {where} --data SPEC`."]
    lines += ["", "## How to load", "", *_how_to_load(where, fmt, layout, front_end, merged.get("prompt_template")), ""]
    return "\n".join(lines)


def write_model_card(writer, source_manifest: dict) -> Path:
    """README.md in the writer's temporary folder, so the manifest lists it; call before the block ends."""
    target = writer.path / "README.md"
    target.write_text(render(str(writer.out_dir), writer.manifest, source_manifest), encoding="utf-8")
    return target
