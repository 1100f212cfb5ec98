"""Finding Hugging Face models already on this machine, never downloading.

Real aliases (``opt2.7b``, ``vicuna7b``) name hub repositories, but vltool runs where no hub can
be reached, so the only place they can come from is the local cache that ``huggingface_hub``
writes (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``):
``models--org--name/refs/main`` names the current snapshot and ``snapshots/<sha>/`` holds it.

The cache directory is read from the environment at every call (``huggingface_hub.constants``
freezes it at import time, which would ignore an ``HF_HOME`` set later, e.g. in tests). A cache
copied from another machine often lacks ``refs/``; then the newest complete snapshot wins.
A snapshot only counts when its weights are all there: a half-finished download would
otherwise resolve and fail much later with a less helpful message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def hf_cache_dir() -> Path:
    """The hub cache directory the environment names now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home).expanduser() / "hub"


def weights_complete(folder: Path) -> bool:
    """Whether a model folder has a config and all of its weight files (sharded or not)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return False
    if any((folder / name).is_file() for name in WEIGHT_FILES):
        return True
    for index_name in INDEX_FILES:
        index = folder / index_name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (ValueError, KeyError):
                return False
            return all((folder / shard).is_file() for shard in shards)
    return False


def _repo_dir(hub_id: str, cache: Path) -> Path:
    return cache / f"models--{hub_id.replace('/', '--')}"


def cached_snapshot(hub_id: str, cache_dir: Path | None = None) -> Path | None:
    """The local snapshot folder of ``hub_id`` with complete weights, or None. No network."""
    from huggingface_hub import try_to_load_from_cache

    cache = Path(cache_dir) if cache_dir is not None else hf_cache_dir()
    found = try_to_load_from_cache(hub_id, "config.json", cache_dir=str(cache))
    if isinstance(found, str):
        snapshot = Path(found).parent
        if weights_complete(snapshot):
            return snapshot
    snapshots = _repo_dir(hub_id, cache) / "snapshots"
    candidates = sorted((p for p in snapshots.glob("*") if weights_complete(p)),
                        key=lambda p: (p / "config.json").stat().st_mtime)
    return candidates[-1] if candidates else None


def partial_snapshot(hub_id: str, cache_dir: Path | None = None) -> Path | None:
    """A snapshot that exists but misses weights (an interrupted download), for error messages."""
    cache = Path(cache_dir) if cache_dir is not None else hf_cache_dir()
    snapshots = sorted((_repo_dir(hub_id, cache) / "snapshots").glob("*"))
    return snapshots[-1] if snapshots else None
