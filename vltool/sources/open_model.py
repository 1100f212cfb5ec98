"""One way to open any model or artifact: ``open_model(spec) -> Opened``.

Every command that reads a model (transfer, warmup, tune-mma, merge, eval, predict, convert) comes
through here, so the rules a model must follow to be trained, merged and loaded by plain
transformers are applied in one place:

* what a spec is: ``resolve.locate`` + ``resolve.classify`` (an alias, hub id, HF folder, vpg /
  adapters / model artifact); nothing else looks inside a folder's config.json;
* special tokens: ``special_tokens.settle_special_tokens`` (the tokenizer's bos / eos, a pad token
  that the tokenizer and both configs agree on, no negative id; lmsys/vicuna-7b-v1.1's config
  says pad -1);
* the image placeholder: ``hf_blip2.ensure_image_token`` (``<image>`` in the tokenizer at
  ``config.image_token_index``, the embeddings grown deterministically when it is new); a vpg
  artifact must get the id it was trained with, or it is refused;
* a vpg artifact + its target LLM is assembled into one ``Blip2ForConditionalGeneration`` here
  and nowhere else.

A transfer's ``--src`` is the one model read in part, on purpose: ``vpg_source.load_source``
resolves and classifies it the same way but reads only the VPG and projector tensors (the source
LLM, 2.7B-6.7B parameters, would be read only to be thrown away).

Adapters artifacts (MM-Adapters on a base) are recognised, not built: the MMA model lives in
``vltool.models.mma``, above this layer, and builds on the base that ``open_model`` opens.

``dtype``: the dtype a causal LM (and a BLIP-2 ViT) is read in, straight from the weight files
(``from_pretrained(dtype=...)``), so loading a 7B fp16 target for bf16 training needs about its
stored size of host memory, not twice that for an fp32 copy cast down afterwards. Tensors of one
dimension (norms, biases) are kept in fp32 whatever ``dtype`` is, as ``models.memory`` keeps them
while training (a few MiB; ``ln_vision`` trains).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.artifacts import read_artifact
from vltool.errors import UserError
from vltool.sources.hf_blip2 import IMAGE_TOKEN, assemble_blip2, ensure_image_token, load_causal_lm
from vltool.sources.resolve import ResolvedSource, SourceKind, classify, locate, resolve_target
from vltool.sources.special_tokens import settle_special_tokens
from vltool.sources.vpg_source import load_vpg_artifact
from vltool.sources.weight_files import load_or_explain

BLIP2 = "blip2"  # a Blip2ForConditionalGeneration: HF BLIP-2 folder, merged vpg folder, or an assembled vpg artifact
CAUSAL_LM = "causal_lm"
ADAPTERS = "adapters"  # an MM-Adapters artifact: built by vltool.models.mma.loading on its base


@dataclass
class Opened:
    """A model ready to use: its tokenizer (rules applied), image processor and where it came from."""

    kind: str
    model: Any
    tokenizer: Any
    processor: Any
    provenance: dict[str, Any]
    source: ResolvedSource
    manifest: dict[str, Any] = field(default_factory=dict)  # an artifact's manifest ({} otherwise)
    vpg: Any = None  # a vpg artifact's parts (VPGSource): its LLM embeddings, vision reference
    llm_path: Path | None = None  # the folder of the causal LM inside (targets, vpg artifacts)

    @property
    def path(self) -> Path:
        return self.source.path

    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model if self.kind == BLIP2 else self.model

    @property
    def image_token_index(self) -> int | None:
        return self.provenance.get("image_token_index")


def keep_small_tensors_fp32(module: nn.Module) -> int:
    """Floating tensors of fewer than two dimensions (norms, biases) back to fp32; returns how many."""
    count = 0
    for param in module.parameters():
        if param.ndim < 2 and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()
            count += 1
    return count


def _tokenizer(folder: Path, flag: str, spec: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, ImportError) as err:
        raise UserError(f"{flag} {spec}: cannot load the tokenizer in {folder} ({str(err).splitlines()[0]}); a "
                        f"tokenizer.model-only LLaMA/Vicuna needs the sentencepiece and protobuf packages") from None


def _image_processor(folder: Path) -> Any:
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise UserError(f"{folder}: cannot load its image processor (preprocessor_config.json): {err}") from None


def _provenance(found: ResolvedSource, **extra: Any) -> dict[str, Any]:
    return {"spec": found.spec, "path": str(found.path), "alias": found.alias, "kind": found.kind.value,
            "artifact_kind": found.artifact_kind, **extra}


def _opened_causal_lm(found: ResolvedSource, flag: str, dtype: torch.dtype, image_token: bool) -> Opened:

    lm = load_causal_lm(found.path, dtype)
    if dtype != torch.float32:
        keep_small_tensors_fp32(lm)
    tokenizer = _tokenizer(found.path, flag, found.spec)
    ids = settle_special_tokens(lm, tokenizer)
    index = ensure_image_token(tokenizer, lm) if image_token else None
    return Opened(CAUSAL_LM, lm, tokenizer, None,
                  _provenance(found, image_token_index=index, bos=ids.bos, eos=ids.eos, pad=ids.pad,
                              dtype=str(dtype).removeprefix("torch.")),
                  found, llm_path=found.path)


def open_target(spec: str, flag: str = "--dst", *, dtype: torch.dtype = torch.float32,
                image_token: bool = True) -> Opened:
    """A causal LM to give eyes to (``--dst``, tune-mma's clip ``--model``): special-token and
    (with ``image_token``) image-token rules applied."""

    return _opened_causal_lm(resolve_target(spec, flag), flag, dtype, image_token)


def _blip2_settled(model: Any, tokenizer: Any) -> int:
    """A whole BLIP-2 model's rules: special tokens on its LM and top-level generation config, ``<image>``."""

    ids = settle_special_tokens(model.language_model, tokenizer)
    top = model.generation_config
    own_eos = top.eos_token_id
    stops = [e for e in (own_eos if isinstance(own_eos, list) else [own_eos])
             if isinstance(e, int) and 0 <= e < model.language_model.get_input_embeddings().num_embeddings]
    top.bos_token_id, top.pad_token_id = ids.bos, ids.pad
    stops += [ids.eos] if ids.eos is not None and ids.eos not in stops else []
    top.eos_token_id = stops[0] if len(stops) == 1 else (stops or None)  # a BLIP-2 OPT's "\n" (50118) is kept
    return ensure_image_token(tokenizer, model)


def open_blip2_folder(found: ResolvedSource, *, dtype: torch.dtype = torch.float32) -> Opened:
    """An HF BLIP-2 folder loaded whole (Salesforce/blip2-*, also from before the Dec 2024 hub
    update without ``<image>``, or a merged folder)."""
    from transformers import Blip2ForConditionalGeneration


    path = found.path
    model = load_or_explain(lambda: Blip2ForConditionalGeneration.from_pretrained(str(path), dtype=dtype), path)
    if dtype != torch.float32:
        keep_small_tensors_fp32(model)
    model.eval()
    tokenizer = _tokenizer(path, "MODEL", found.spec)
    had = getattr(model.config, "image_token_index", None)
    index = _blip2_settled(model, tokenizer)
    if had is not None and int(had) != index:

        raise UserError(f"{path}: config.image_token_index is {had} but its tokenizer has {IMAGE_TOKEN} at {index}; "
                        f"transformers would put the image in the wrong place")
    return Opened(BLIP2, model, tokenizer, _image_processor(path), _provenance(found, image_token_index=index),
                  found, manifest=_manifest(found), llm_path=path)


def _manifest(found: ResolvedSource) -> dict[str, Any]:
    if not (found.path / "manifest.json").is_file():
        return {}

    return read_artifact(found.path, verify=False).manifest


def open_vpg_artifact(found: ResolvedSource, *, dtype: torch.dtype = torch.float32) -> Opened:
    """A vpg artifact on its (fingerprint-checked) target LLM, as one Blip2ForConditionalGeneration.

    The target gets ``<image>`` exactly as training added it; an artifact trained with another id
    (the LLM's tokenizer changed) is refused before anything is built.
    """

    path = found.path
    vpg, manifest, llm_path = load_vpg_artifact(path)
    target = _opened_causal_lm(classify(llm_path, str(llm_path), "the artifact's LLM"), "the artifact's LLM",
                               dtype, image_token=True)
    vpg_config = path / "configs" / "vpg.json"
    trained = json.loads(vpg_config.read_text()).get("image_token_index") if vpg_config.is_file() else None
    index = target.image_token_index
    if trained is not None and int(trained) != index:
        raise UserError(f"{path} was trained with <image> at id {trained}, but its target tokenizer now gives "
                        f"{index}; the target LLM's tokenizer has changed")
    model = assemble_blip2(vpg.vision_model, vpg.qformer, nn.Parameter(vpg.query_tokens.detach().clone()),
                           vpg.projector, target.model, index)
    provenance = _provenance(found, image_token_index=index, llm=str(llm_path), vision=vpg.vision_ref,
                             bos=target.provenance["bos"], eos=target.provenance["eos"], pad=target.provenance["pad"])
    return Opened(BLIP2, model.eval(), target.tokenizer, vpg.image_processor, provenance, found, manifest=manifest,
                  vpg=vpg, llm_path=llm_path)


def resolve_model(spec: str, role: str = "target", flag: str = "MODEL") -> ResolvedSource:
    """``spec`` located (path, alias in ``role``, hub id) and classified."""
    path, alias = locate(spec, role, flag)
    return classify(path, spec, flag, alias=alias)


def open_model(spec: str | ResolvedSource, role: str = "target", flag: str = "MODEL", *,
               dtype: torch.dtype = torch.float32, kinds: tuple[str, ...] = (BLIP2, CAUSAL_LM, ADAPTERS),
               image_token: bool = False) -> Opened:
    """Open whatever ``spec`` names: a vpg artifact (assembled on its LLM), an HF BLIP-2 or merged
    folder, a causal LM (``image_token``: with ``<image>`` added), or an adapters artifact
    (recognised, ``model`` None: ``vltool.models.mma.loading`` builds it). ``kinds`` are accepted."""
    found = spec if isinstance(spec, ResolvedSource) else resolve_model(spec, role, flag)
    art = found.artifact_kind
    if found.kind is SourceKind.LAVIS_PTH:
        raise UserError(f"{flag} {found.spec} is a LAVIS checkpoint; convert it first with "
                        f"'vltool convert {found.spec} --dst LLM --out DIR' and pass DIR")
    if found.kind is SourceKind.ARTIFACT and art not in ("vpg", "adapters"):
        raise UserError(f"{flag} {found.spec} is a {art!r} artifact; expected a vpg, adapters or merged model")
    kind = {"vpg": BLIP2, "adapters": ADAPTERS}.get(art or "", BLIP2 if found.kind is SourceKind.BLIP2 else CAUSAL_LM)
    if kind not in kinds:  # refused before anything is loaded
        names = {BLIP2: "a BLIP-2 model or vpg artifact", CAUSAL_LM: "a causal LM", ADAPTERS: "an adapters artifact"}
        raise UserError(f"{flag} {found.spec} is {names[kind]}; expected " + " or ".join(names[k] for k in kinds))
    if art == "vpg":
        return open_vpg_artifact(found, dtype=dtype)
    if kind == ADAPTERS:
        return Opened(ADAPTERS, None, None, None, _provenance(found), found, manifest=_manifest(found))
    if kind == BLIP2:
        return open_blip2_folder(found, dtype=dtype)
    return _opened_causal_lm(found, flag, dtype, image_token)
