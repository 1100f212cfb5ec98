"""Name the weight file that cannot be read, instead of a loader's traceback.

A half-finished download (a truncated ``model.safetensors`` or ``.bin`` shard) or a damaged
disk makes transformers or safetensors raise deep inside loading, with a message that names no
file. ``load_or_explain`` runs a load and, if it fails, checks each weight file of the folder
cheaply (safetensors: the header must cover the file; ``.bin``: the zip must open) and turns the
failure into one ``UserError`` naming the file and what to do.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from vltool.errors import UserError

T = TypeVar("T")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


def weight_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()) if folder.is_dir() else []


def unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a weight file, or None when it looks whole."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as handle:
                handle.keys()
        elif path.stat().st_size == 0:
            return "it is empty"
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                return f"member {bad} is corrupt"
        else:  # a truncated torch zip is no zip any more; a legacy pickle only shows by loading
            import torch

            torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is the answer we are after
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def check_weight_files(folder: Path) -> None:
    """Raise a one-line UserError for the first weight file under ``folder`` that cannot be read."""
    for path in weight_files(folder):
        reason = unreadable(path)
        if reason is not None:
            raise UserError(f"cannot read the weights in {path} ({reason}); the file is truncated or damaged, "
                            f"e.g. by an unfinished download: download it again")


def load_or_explain(load: Callable[[], T], folder: Path) -> T:
    """``load()``, with a failure caused by an unreadable weight file reported as that file."""
    try:
        return load()
    except (OSError, RuntimeError, ValueError, EOFError):
        check_weight_files(folder)
        raise
    except Exception as err:
        if type(err).__name__ == "SafetensorError":
            check_weight_files(folder)
        raise
