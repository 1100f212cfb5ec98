"""Turn what a user typed for ``--src`` / ``--dst`` into a typed, local source.

Four kinds of thing can stand behind a model argument, and every command needs to know which
before it loads gigabytes: an HF BLIP-2 folder (Salesforce/blip2-* layout), an HF causal-LM
folder with its tokenizer, a LAVIS ``.pth`` checkpoint, or a vltool artifact folder (it has a
``manifest.json``; reading it is ``vltool.artifacts``' job, here it is only recognised). A merged
``model`` artifact is also a normal HF folder, so it classifies by its config.json (BLIP-2 or
causal LM) and ``artifact_kind`` still tells that it came from vltool.
Resolution looks at the disk first (an explicit path always wins over an alias of the same
name, but a bare alias name means the alias), then at the alias registry, then reads ``org/name``
as a hub id; hub models come from the HF cache, or are downloaded when online (``hub_cache``).
Only small JSON files are read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from vltool.errors import UserError
from vltool.sources.aliases import all_aliases, hub_missing_message, names_alias, resolve_alias
from vltool.sources.hub_cache import locate_hub_model, looks_like_hub_id, split_revision

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class SourceKind(str, Enum):
    BLIP2 = "blip2"  # HF Blip2ForConditionalGeneration folder
    CAUSAL_LM = "causal_lm"  # HF causal LM folder with a tokenizer
    LAVIS_PTH = "lavis_pth"  # LAVIS BLIP-2 checkpoint file
    ARTIFACT = "artifact"  # vltool artifact folder (manifest.json) that is not itself an HF model folder


DESCRIPTIONS = {
    SourceKind.BLIP2: "an HF BLIP-2 folder",
    SourceKind.CAUSAL_LM: "an HF causal-LM folder with its tokenizer",
    SourceKind.LAVIS_PTH: "a LAVIS BLIP-2 .pth checkpoint",
    SourceKind.ARTIFACT: "a vltool artifact folder",
}


@dataclass(frozen=True)
class ResolvedSource:
    """A model argument, classified. ``alias`` is set when it came through the registry."""

    kind: SourceKind
    path: Path
    spec: str
    alias: str | None = None
    model_type: str | None = None  # config.json's model_type, where there is one

    @property
    def artifact_kind(self) -> str | None:
        """An artifact's ``kind`` (``vpg``, ``adapters``, ``model``) from its manifest, else None."""
        if not (self.path / "manifest.json").is_file():
            return None
        try:
            return json.loads((self.path / "manifest.json").read_text()).get("kind")
        except (OSError, ValueError):
            return None


def read_config(folder: Path) -> dict | None:
    """A folder's config.json as a dict, None when absent; a UserError when it is not JSON."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text())
    except ValueError as err:
        raise UserError(f"{config} is not valid JSON ({err})") from None


def _is_causal_lm(config: dict) -> bool:
    architectures = config.get("architectures") or []
    if any(a.endswith("ForCausalLM") for a in architectures):
        return True
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return config.get("model_type") in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def classify(path: Path, spec: str, flag: str, alias: str | None = None) -> ResolvedSource:
    """What kind of model source an existing path is (UserError when it is none of them)."""
    path = Path(path)
    if path.is_file():
        if path.suffix in CHECKPOINT_SUFFIXES:
            return ResolvedSource(SourceKind.LAVIS_PTH, path, spec, alias)
        raise UserError(f"{flag} {spec}: {path} is a file but not a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}); "
                        f"expected a model folder, a LAVIS .pth or an alias")
    config = read_config(path)
    if config is None and (path / "manifest.json").is_file():
        return ResolvedSource(SourceKind.ARTIFACT, path, spec, alias)
    if config is None:
        raise UserError(f"{flag} {spec}: {path} has no config.json; expected a Hugging Face model folder, "
                        f"a vltool artifact (manifest.json) or a LAVIS .pth")
    model_type = config.get("model_type")
    if model_type == "blip-2":
        return ResolvedSource(SourceKind.BLIP2, path, spec, alias, model_type)
    if _is_causal_lm(config):
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise UserError(f"{flag} {spec}: {path} is a causal LM ({model_type}) without a tokenizer; save the "
                            f"tokenizer into the same folder (tokenizer.save_pretrained)")
        return ResolvedSource(SourceKind.CAUSAL_LM, path, spec, alias, model_type)
    raise UserError(f"{flag} {spec}: {path} holds a {model_type!r} model, which is neither BLIP-2 nor a causal LM")


def locate(spec: str, role: str, flag: str) -> tuple[Path, str | None]:
    """(local path, alias name or None) behind ``spec``: a path, an alias (``name[@rev]``) in ``role``,
    or a hub id (``org/name[@rev]``) found in the HF cache or downloaded when online."""

    path = Path(spec).expanduser()
    name, revision = split_revision(spec)
    if path.exists() and not names_alias(name, role):
        return path, None
    if name in _alias_names():
        return resolve_alias(spec, role, flag), name
    if looks_like_hub_id(spec) and not spec.startswith((".", "~", "/")) and path.suffix not in CHECKPOINT_SUFFIXES:
        missing = hub_missing_message(name, flag, revision, f"{spec} is no local folder; as a hub model it")
        return locate_hub_model(name, revision, flag, missing), None
    if "/" in spec or spec.startswith((".", "~")) or path.suffix in CHECKPOINT_SUFFIXES:
        raise UserError(f"{flag} {spec}: no such file or folder")
    return resolve_alias(spec, role, flag), spec


def resolve(spec: str, role: str, flag: str, allowed: Sequence[SourceKind] | None = None) -> ResolvedSource:
    """Resolve ``spec`` (path, alias in ``role`` or hub id) and check it is one of the ``allowed`` kinds."""
    path, alias = locate(spec, role, flag)
    found = classify(path, spec, flag, alias=alias)
    if allowed is not None and found.kind not in allowed:
        wanted = " or ".join(DESCRIPTIONS[k] for k in allowed)
        raise UserError(f"{flag} {spec} is {DESCRIPTIONS[found.kind]} ({found.path}); expected {wanted}")
    return found


def _alias_names() -> set[str]:

    return {a.name for a in all_aliases()}


def resolve_source(spec: str) -> ResolvedSource:
    """``--src`` of warmup/transfer: a BLIP-2 folder, a LAVIS .pth or a vpg artifact."""
    return resolve(spec, "source", "--src", (SourceKind.BLIP2, SourceKind.LAVIS_PTH, SourceKind.ARTIFACT))


def resolve_target(spec: str, flag: str = "--dst") -> ResolvedSource:
    """``--dst``: a causal LM with its tokenizer."""
    found = resolve(spec, "target", flag)
    if found.kind is SourceKind.BLIP2:
        raise UserError(f"{flag} {spec} is a BLIP-2 model; {flag} takes the plain causal LM to give eyes to")
    if found.kind is not SourceKind.CAUSAL_LM:
        raise UserError(f"{flag} {spec} is {DESCRIPTIONS[found.kind]} ({found.path}); expected "
                        f"{DESCRIPTIONS[SourceKind.CAUSAL_LM]}")
    return found
