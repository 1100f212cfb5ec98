"""Model aliases: short names users type (``opt2.7b``, ``vicuna7b``, ``demo-llama``).

A real alias names a Hugging Face repository; it resolves ONLY through the local HF cache
(``HF_HOME`` / ``HF_HUB_CACHE``), never the network. The same alias means different models in
different roles: as a VPGTrans source ``opt2.7b`` is BLIP-2 OPT-2.7B, as a target it is the plain
OPT-2.7B causal LM. Demo aliases resolve to folders of the demo world under ``VLTOOL_HOME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vltool.errors import UserError

ROLES = ("source", "target", "vision")


@dataclass(frozen=True)
class Alias:
    name: str
    role: str
    hub_id: str | None  # None: a demo model, built locally
    arch: str | None = None  # architecture config shipped as data (for --dry-run)
    note: str = ""


REAL_ALIASES = [
    Alias("opt2.7b", "source", "Salesforce/blip2-opt-2.7b", "blip2-opt-2.7b", "BLIP-2 OPT-2.7B"),
    Alias("opt2.7b", "target", "facebook/opt-2.7b", "opt-2.7b"),
    Alias("opt6.7b", "source", "Salesforce/blip2-opt-6.7b", "blip2-opt-6.7b", "BLIP-2 OPT-6.7B"),
    Alias("opt6.7b", "target", "facebook/opt-6.7b", "opt-6.7b"),
    Alias("llama7b", "target", "huggyllama/llama-7b", "llama-7b", "LLaMA-7B in HF format"),
    Alias("llama13b", "target", "huggyllama/llama-13b", "llama-13b", "LLaMA-13B in HF format"),
    Alias("vicuna7b", "target", "lmsys/vicuna-7b-v1.1", "llama-7b", "Vicuna-7B v1.1 (LLaMA-7B shape)"),
    Alias("clip-vit-l14", "vision", "openai/clip-vit-large-patch14", "clip-vit-l14", "LaVIN's CLIP ViT-L/14"),
]
DEMO_ALIASES = [
    Alias("demo-blip2-opt-s", "source", None, note="demo world source BLIP-2 (tiny ViT + Q-Former on demo-opt-s)"),
    Alias("demo-opt-s", "target", None, note="demo world small OPT (the source's LM)"),
    Alias("demo-opt-l", "target", None, note="demo world larger OPT, same tokenizer"),
    Alias("demo-llama", "target", None, note="demo world LLaMA, different tokenizer"),
]


def all_aliases() -> list[Alias]:
    return REAL_ALIASES + DEMO_ALIASES


def find_alias(name: str, role: str) -> Alias | None:
    for alias in all_aliases():
        if alias.name == name and alias.role == role:
            return alias
    return None


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home) / "hub"


def cached_snapshot(hub_id: str) -> Path | None:
    """The newest local snapshot folder of a hub repository, without any network access."""
    repo = hf_cache_dir() / f"models--{hub_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshot = repo / "snapshots" / ref.read_text().strip()
        if (snapshot / "config.json").is_file():
            return snapshot
    snapshots = sorted((repo / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return snapshots[-1].parent if snapshots else None


def alias_path(alias: Alias) -> Path | None:
    """Where an alias lives locally, or None when it is not there."""
    if alias.hub_id is None:
        from vltool.demo.home import demo_model_paths

        path = demo_model_paths()[alias.name]
        return path if (path / "config.json").is_file() else None
    return cached_snapshot(alias.hub_id)


def resolve_alias(name: str, role: str, flag: str) -> Path:
    """An alias's local folder, or a UserError saying exactly what to download or build."""
    alias = find_alias(name, role)
    if alias is None:
        known = sorted({a.name for a in all_aliases() if a.role == role})
        raise UserError(f"{flag} {name!r} is neither a folder, a file nor a known {role} alias "
                        f"({', '.join(known)})")
    path = alias_path(alias)
    if path is not None:
        return path
    if alias.hub_id is None:
        raise UserError(f"{flag} {name}: the demo world is not built yet; run 'vltool zoo build' first")
    raise UserError(
        f"{flag} {name} means {alias.hub_id}, which is not in the local Hugging Face cache "
        f"({hf_cache_dir()}); download it where there is internet (huggingface-cli download {alias.hub_id}) "
        f"and copy the cache here (or set HF_HOME), or pass the model folder as {flag} PATH"
    )
