"""The warm-up feature cache on disk: built once, memory-mapped, keyed, reused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from vltool.data import feature_cache as fc


class OneProcess:
    is_main_process, process_index, num_processes = True, 0, 1

    def wait_for_everyone(self) -> None:
        pass


class Table:
    """Stands in for an ImageTable: 'decodes' image i into a fixed tensor, counting decodes."""

    def __init__(self, n: int) -> None:
        self.images = [f"img{i}.jpg" for i in range(n)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.full((3, 4, 4), float(i))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cache_is_built_once_mapped_and_reused(tmp_path: Path, monkeypatch, dtype) -> None:
    monkeypatch.setenv("VLTOOL_HOME", str(tmp_path))
    encoder = nn.Linear(48, 6)
    calls = []

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        calls.append(len(pixels))
        return encoder(pixels.flatten(1)).view(len(pixels), 2, 3)

    images = Table(10)
    key = fc.cache_key(fc.module_fingerprint([encoder]), {"size": 4}, images.images, dtype)
    assert fc.find(key) is None
    with torch.no_grad():
        table = fc.build(OneProcess(), key, len(images), encode, fc.image_batches(images, 4, 0), dtype, {})
        expected = encode(torch.stack([images[i] for i in (7, 2)]))
    assert table.folder.parent == tmp_path / "feature-cache" and len(table) == 10
    rows = table[[7, 2]]
    assert rows.dtype == torch.float32 and rows.shape == (2, 2, 3)
    assert torch.allclose(rows, expected.to(dtype).float())
    assert table.array.dtype.itemsize == 2  # 16-bit on disk
    calls.clear()
    again = fc.build(OneProcess(), key, len(images), encode, fc.image_batches(images, 4, 0), dtype, {})
    assert calls == [] and torch.equal(again[[7, 2]], rows)
    clone = pickle.loads(pickle.dumps(table))  # what a DataLoader worker receives: re-maps on use
    assert clone._array is None and torch.equal(clone[[7, 2]], rows)


def test_key_changes_with_weights_preprocessing_and_images() -> None:
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    fa = fc.module_fingerprint([a])
    assert fa == fc.module_fingerprint([a]) and fa != fc.module_fingerprint([b])
    key = fc.cache_key(fa, {"size": 224}, ["x.jpg"], torch.float16)
    assert key != fc.cache_key(fa, {"size": 364}, ["x.jpg"], torch.float16)
    assert key != fc.cache_key(fa, {"size": 224}, ["y.jpg"], torch.float16)
    assert key != fc.cache_key(fa, {"size": 224}, ["x.jpg"], torch.bfloat16)
