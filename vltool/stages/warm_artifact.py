"""``--from-warmup`` / ``--from-vpg``: what a finished vpg artifact fixes for the stage that continues it.

The artifact's manifest is read once here (before the run folder is claimed); its files are hashed
once, when ``vpgtrans_setup.prepare`` opens it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vltool.artifacts import read_artifact
from vltool.config.schema import VPGTransRecipe
from vltool.errors import UserError
from vltool.sources.resolve import resolve_target


def check_matches(cfg: VPGTransRecipe, warm: Path) -> dict[str, Any]:
    """The manifest of the vpg artifact ``warm`` (read once, before the run folder is claimed), after
    refusing ``--dst`` / ``--src`` that differ from what it was trained for.

    Its projector maps into its own LLM's embedding space; continuing on another LLM would train
    on the artifact's LLM while the manifest names the other one. Its files are hashed once, later,
    when ``prepare`` opens it.
    """

    manifest = read_artifact(warm, kinds=("vpg",), verify=False).manifest
    recipe = manifest.get("recipe", {})
    for key, flag in (("dst", "--dst"), ("src", "--src")):
        theirs, ours = recipe.get(key), getattr(cfg, key)
        if not theirs or not ours or theirs == ours:
            continue
        if key == "dst":
            try:
                if resolve_target(ours).path.resolve() == resolve_target(theirs).path.resolve():
                    continue
            except UserError:
                pass
        raise UserError(f"{flag} {ours} does not match the warm-up artifact {warm}, which was trained with "
                        f"{key} {theirs}; drop {flag} or pass {theirs}")
    return manifest


def flags_from_warmup(path: Path) -> dict[str, Any]:
    """Recipe values a warm-up artifact fixes (src, dst, the caption prompt and end of text), so
    ``--from-warmup`` needs no repeats and stage 2 trains the layout the warm-up did.

    Not its data: stage 2 trains on the recipe's own mix (the paper: COCO + VG + LAION-COCO after a
    COCO + SBU warm-up); ``with_warmup_data`` fills in only what the recipe leaves empty."""
    recipe = read_artifact(Path(path), kinds=("vpg",), verify=False).manifest.get("recipe", {})
    return {"src": recipe.get("src"), "dst": recipe.get("dst"), "end_of_text": recipe.get("end_of_text"),
            "prompt": recipe.get("prompt")}


def with_warmup_data(cfg: VPGTransRecipe, path: Path, manifest: dict[str, Any] | None = None) -> VPGTransRecipe:
    """``cfg`` with the data keys it leaves empty taken from the warm-up artifact's recipe.

    Stage-2 data the recipe or ``--data`` gives are kept as they are. Without any, stage 2 continues
    on the warm-up recipe's stage-2 data (``data.train``), else on the warm-up's own data; validation
    data, the image root and the sample caps likewise only when unset.
    """
    if manifest is None:
        manifest = read_artifact(Path(path), kinds=("vpg",), verify=False).manifest
    recipe = manifest.get("recipe", {})
    theirs = recipe.get("data", {})
    update: dict[str, Any] = {}
    if not cfg.data.train:
        update["train"] = theirs.get("train") or recipe.get("warmup", {}).get("data") or []
        if cfg.data.max_train_samples is None and theirs.get("max_train_samples"):
            update["max_train_samples"] = theirs["max_train_samples"]
    if not cfg.data.val and theirs.get("val"):
        update["val"] = theirs["val"]
        if cfg.data.max_val_samples is None and theirs.get("max_val_samples"):
            update["max_val_samples"] = theirs["max_val_samples"]
    if cfg.data.images is None and theirs.get("images"):
        update["images"] = theirs["images"]
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=update)}) if update else cfg
