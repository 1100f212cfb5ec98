"""The warm-up feature cache on disk: a frozen VPG's output per image, memory-mapped.

During the projector-only warm-up the VPG (ViT + Q-Former + query tokens) is frozen, so its
output for an image never changes; VPGTrans computes it once per image and trains the projector
on the stored rows. At COCO scale that table is 113k x 32 x 768 values (5.6 GB in fp16), so it
lives in a file, not in each process's RAM:

- ``features.npy``: one row per distinct image, in fp16 (or the VPG's own dtype when that is
  bf16 / fp32; bf16 rows are stored as raw 16-bit integers), opened with ``numpy`` memory-mapping,
  so every process on a node shares the page cache and RSS stays bounded;
- ``meta.json``: shape, dtype and what the key was made of; written last, so a folder without it
  is an unfinished build and is rebuilt.

Building: every process encodes its share of the images (decoded in DataLoader workers) and
writes its rows into the file the main process created; the main process then writes
``meta.json``; everyone waits (``accelerator.wait_for_everyone``) and maps the result. The
folder must therefore be visible to every process (one node, or a shared filesystem).

Where: ``VLTOOL_HOME/feature-cache/<key>/`` (default ``~/.cache/vltool``), keyed by a
fingerprint of the frozen VPG's tensors, the image preprocessing, the storage dtype and the
list of image paths, so a second run (another seed, LR, target LLM) reuses it. Editing an
image file in place is not detected: delete the folder (``vltool`` prints it) to rebuild.

When it pays: the cache replaces one VPG forward per drawn sample with one per distinct image,
so it pays when images are drawn more than once (COCO has five captions per image; several
warm-up epochs) or when the cache already exists. When each image is drawn at most once and
there is no cache yet, building it costs the same VPG passes the warm-up would make, so it is
skipped with a note. It is refused with random image augmentation (one stored output per image
cannot hold random crops and flips).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vltool.artifacts.disk_space import disk_full, free_bytes, guard, reserve
from vltool.data.heap import release_free_memory
from vltool.errors import UserError

FORMAT = 1


def cache_root() -> Path:
    home = os.environ.get("VLTOOL_HOME")
    base = Path(home).expanduser() if home else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vltool"
    return base / "feature-cache"


def module_fingerprint(modules: Sequence[Any]) -> str:
    """A cheap, content-based fingerprint of frozen tensors: names, shapes, dtypes and a strided sample
    of every tensor's values (a changed checkpoint changes it; hashing all 1B ViT-g values would not
    be cheap)."""
    digest = hashlib.sha256()
    for index, module in enumerate(modules):
        items = module.state_dict().items() if hasattr(module, "state_dict") else [("tensor", module)]
        for name, tensor in items:
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step].float().cpu().numpy().tobytes()
            digest.update(f"{index}/{name}/{tuple(tensor.shape)}/{tensor.dtype}".encode())
            digest.update(sample)
            digest.update(str(float(flat.float().sum())).encode())
    return digest.hexdigest()


def cache_key(model_fingerprint: str, preprocessing: dict, images: Sequence[Any], dtype: torch.dtype) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT, "model": model_fingerprint, "preprocessing": preprocessing,
                              "dtype": str(dtype), "n": len(images)}, sort_keys=True, default=str).encode())
    for image in images:
        digest.update(str(image).encode() + b"\0")
    return digest.hexdigest()[:24]


def storage_dtype(model_dtype: torch.dtype) -> torch.dtype:
    """fp16 unless the VPG itself runs in bf16 or fp32 weights are wanted for a bf16 model: its dtype."""
    return torch.bfloat16 if model_dtype == torch.bfloat16 else torch.float16


def _np_dtype(dtype: torch.dtype) -> np.dtype:
    return {torch.float16: np.float16, torch.float32: np.float32, torch.bfloat16: np.int16}[dtype]


class FeatureTable:
    """Rows of a memory-mapped cache, indexed like a tensor: ``table[[3, 1]] -> [2, Q, d]`` (fp32)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        meta = json.loads((folder / "meta.json").read_text())
        self.dtype = getattr(torch, meta["torch_dtype"].removeprefix("torch."))
        self.shape = tuple(meta["shape"])
        self.bad = set(meta.get("bad", []))  # images that could not be read: zero rows, never to be used
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:  # opened lazily, so a DataLoader worker maps its own view
            self._array = np.load(self.folder / "features.npy", mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Sequence[int]) -> torch.Tensor:
        rows = torch.from_numpy(np.ascontiguousarray(self.array[np.asarray(index)]))
        if self.dtype == torch.bfloat16:
            rows = rows.view(torch.bfloat16)
        return rows.float()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}


class _Images(torch.utils.data.Dataset):
    def __init__(self, table: Any, indices: Sequence[int]) -> None:
        self.table, self.indices = table, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None]:
        try:
            return self.indices[i], self.table[self.indices[i]]
        except UserError:  # a missing / corrupt image: its row stays zero and is listed as bad
            return self.indices[i], None


def _stack(items: list[tuple[int, torch.Tensor | None]]) -> tuple[list[int], torch.Tensor | None, list[int]]:
    good = [(i, t) for i, t in items if t is not None]
    pixels = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], pixels, [i for i, t in items if t is None]


def image_batches(table: Any, batch_size: int, workers: int) -> Callable[[list[int]], Any]:
    """``indices -> iterable of (ids, pixels)``: ``table[i]`` decoded in ``workers`` processes."""
    from torch.utils.data import DataLoader

    def run(indices: list[int]):
        if workers:

            release_free_memory()  # the workers fork now: give the setup's freed pages back first (#23)
        return DataLoader(_Images(table, indices), batch_size=batch_size, num_workers=workers, collate_fn=_stack)

    return run


def find(key: str) -> Path | None:
    folder = cache_root() / key
    return folder if (folder / "meta.json").is_file() else None


def _bytes(folder: Path) -> int:
    """The size ``features.npy`` takes (its header says), 0 before it exists."""
    try:
        array = np.load(folder / "features.npy", mmap_mode="r")
    except (OSError, ValueError):
        return 0
    return int(array.offset + array.nbytes)


def _build(accelerator: Any, folder: Path, n_images: int, encode: Callable[[torch.Tensor], torch.Tensor],
           batches: Callable[[list[int]], Any], dtype: torch.dtype, describe: dict) -> None:
    main = accelerator.is_main_process
    features = folder / "features.npy"
    shape: list[int] | None = None
    if main:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        # the output shape, from the first image
        first_px = next((px for _, px, _ in batches(list(range(n_images))) if px is not None), None)
        if first_px is None:
            raise UserError("no training image can be read")
        sample = encode(first_px[:1])
        shape = [n_images, *sample.shape[1:]]
        size = int(np.prod(shape)) * np.dtype(_np_dtype(dtype)).itemsize
        if free_bytes(folder) < size:
            raise disk_full(features, size, "the feature cache")
        np.lib.format.open_memmap(features, mode="w+", dtype=_np_dtype(dtype), shape=tuple(shape)).flush()
        # the blocks are allocated now: a full disk would otherwise kill the writers with SIGBUS
        reserve(features, _bytes(folder), "the feature cache")
    accelerator.wait_for_everyone()
    mine = list(range(accelerator.process_index, n_images, accelerator.num_processes))
    array = np.load(features, mmap_mode="r+")
    bad: list[int] = []
    for ids, pixels, unreadable in batches(mine):
        bad += unreadable
        if pixels is None:
            continue
        out = encode(pixels).to(dtype).cpu()
        array[np.asarray(ids)] = (out.view(torch.int16) if dtype == torch.bfloat16 else out).numpy()
    array.flush()
    del array
    (folder / f"bad-{accelerator.process_index}.json").write_text(json.dumps(bad))
    accelerator.wait_for_everyone()
    if main:
        shape = list(np.load(features, mmap_mode="r").shape)
        bad = sorted(i for path in folder.glob("bad-*.json") for i in json.loads(path.read_text()))
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps({"format": FORMAT, "shape": shape, "torch_dtype": str(dtype), "bad": bad,
                                  **describe}, indent=1, default=str))
        tmp.rename(folder / "meta.json")
    accelerator.wait_for_everyone()


def build(accelerator: Any, key: str, n_images: int, encode: Callable[[torch.Tensor], torch.Tensor],
          batches: Callable[[list[int]], Any], dtype: torch.dtype, describe: dict) -> FeatureTable:
    """Build (if missing) and map the cache ``key`` over images ``0..n_images-1``.

    ``batches(indices)`` yields ``(index_list, pixels)`` for this process's share of the images;
    ``encode(pixels)`` returns their VPG outputs. Every process writes its own rows.
    """
    folder = cache_root() / key
    if find(key) is None:
        main = accelerator.is_main_process
        # A full disk: the partial folder goes, one line names the filesystem and the size (#23)
        with guard(folder, lambda: _bytes(folder), "the feature cache", cleanup=folder if main else None,
                   kept="training has not started; free space (or set VLTOOL_HOME elsewhere) and rerun"):
            _build(accelerator, folder, n_images, encode, batches, dtype, describe)
    return FeatureTable(folder)
