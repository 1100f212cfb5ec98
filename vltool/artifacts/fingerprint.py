"""Fingerprints that tie an artifact to the exact inputs it was made from.

Files are hashed with sha256. A model can also be fingerprinted by its config plus the names
and shapes of its tensors, which is cheap for multi-GB checkpoints and still changes whenever
the architecture does (a Vicuna artifact will not silently load onto LLaMA-13B).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: Iterable[Path], root: Path) -> str:
    """One hash over several files, keyed by their path relative to ``root``."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def fingerprint_structure(config: Mapping[str, Any], shapes: Mapping[str, Iterable[int]]) -> str:
    """Hash of a model's config and its tensor names / shapes (not its values)."""
    payload = {
        "config": {k: v for k, v in sorted(config.items()) if not str(k).startswith("_")},
        "shapes": {name: list(shape) for name, shape in sorted(shapes.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint_path(path: Path) -> str:
    """Fingerprint of a model source on disk: its config and weight files' structure.

    For a folder, hash the small JSON files and the safetensors headers (names, shapes,
    dtypes), so a 14 GB model is fingerprinted in milliseconds; a single file is hashed whole.
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        if not item.is_file() or item.name == "manifest.json":
            continue
        rel = str(item.relative_to(path)).encode()
        if item.suffix == ".json" and item.stat().st_size < (8 << 20):
            digest.update(rel + sha256_file(item).encode())
        elif item.suffix == ".safetensors":
            digest.update(rel + _safetensors_header(item))
        else:
            digest.update(rel + str(item.stat().st_size).encode())
    return digest.hexdigest()


def _safetensors_header(path: Path) -> bytes:
    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        return handle.read(min(size, 64 << 20))
