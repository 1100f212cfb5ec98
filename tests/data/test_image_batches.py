"""Images for generation decoded in DataLoader workers: same tensors and order as in-process, bad images one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vltool.data.image_batches import image_chunks
from vltool.data.sample import Sample
from vltool.errors import UserError


def load(path: str) -> torch.Tensor:
    if not Path(path).is_file():
        raise UserError(f"cannot read image {path}: missing")
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("L"), dtype="float32")).flatten()


def test_workers_give_the_in_process_batches_and_one_line_errors(tmp_path: Path) -> None:
    samples = []
    for i in range(7):
        Image.new("RGB", (4, 4), (30 * i, 0, 0)).save(tmp_path / f"{i}.png")
        samples.append(Sample(str(i), str(tmp_path / f"{i}.png"), "", "a"))
    samples.insert(3, Sample("text", None, "q", "a"))
    chunks = [[0, 1, 2], [3, 4, 5], [6, 7]]
    inline = list(image_chunks(samples, chunks, load, workers=0))
    threaded = list(image_chunks(samples, chunks, load, workers=2))
    assert [len(c) for c in threaded] == [3, 3, 2] and threaded[1][0] is None
    assert all(torch.equal(a, b) for x, y in zip(inline, threaded) for a, b in zip(x, y) if a is not None)
    samples[5] = Sample("bad", str(tmp_path / "gone.png"), "", "a")
    with pytest.raises(UserError) as err:
        list(image_chunks(samples, chunks, load, workers=2))
    assert str(err.value) == f"cannot read image {tmp_path / 'gone.png'}: missing"
