"""Streaming image data: decoded in DataLoader workers, nothing kept, same result for any worker count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.data_files import Regressor, ToPixels
from torch import nn

from vltool.data.sample import Sample
from vltool.data.vl_dataset import VLDataset
from vltool.errors import UserError
from vltool.training.data_loader import auto_workers, resolve_workers
from vltool.training.loop import make_accelerator, train
from vltool.training.settings import TrainSettings


def write_images(folder: Path, n: int, size: tuple[int, int] = (12, 10)) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths

class PixelCollate:
    def __init__(self, dataset: VLDataset) -> None:
        self.dataset = dataset

    def __call__(self, rows):
        pixels = torch.stack([self.dataset.images[i] for i, _, _ in rows])
        return {"pixel_values": pixels, "target": torch.tensor([float(a) for _, _, a in rows])}

def loss(model, batch):
    return nn.functional.mse_loss(model(batch["pixel_values"]), batch["target"])


def _train(dataset: VLDataset, workers: int | None) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = Regressor()
    cfg = TrainSettings(lr=1e-2, max_steps=4, batch_size=8, micro_batch_size=4, precision="no", seed=3,
                        num_workers=workers, log_every=1)
    result = train(model, loss, dataset, cfg, collate_fn=PixelCollate(dataset),
                   accelerator=make_accelerator("no", cpu=True))
    return {k: v.detach().clone() for k, v in result.model.state_dict().items()}


def _dataset(tmp_path: Path, n: int = 24) -> VLDataset:
    paths = write_images(tmp_path, n)
    samples = [Sample(str(i), p, "", str(i % 3)) for i, p in enumerate(paths)]
    return VLDataset(samples, ToPixels())


def test_images_are_decoded_per_access_and_never_kept(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, 4)
    first = dataset.images[0]
    assert first.shape == (3, 8, 8) and torch.equal(first, dataset.images[0])
    assert not hasattr(dataset.images, "_cache")
    assert dataset.decodes_images
    assert resolve_workers(None, dataset) == auto_workers() and resolve_workers(0, dataset) == 0
    assert resolve_workers(None, torch.utils.data.TensorDataset(torch.zeros(2))) == 0


def test_worker_count_does_not_change_the_result(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)
    serial = _train(dataset, 0)
    parallel = _train(dataset, 2)
    assert all(torch.equal(serial[k], parallel[k]) for k in serial)


def test_a_corrupt_image_found_in_a_worker_is_one_line(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, 8)
    Path(dataset.images.images[3]).write_bytes(b"not a png")
    with pytest.raises(UserError) as err:
        _train(dataset, 1)
    assert "\n" not in str(err.value) and "img003.png" in str(err.value)


@pytest.mark.dist
def test_two_processes_with_workers_and_a_wds_source(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from support import stream_fixture
    from support.run import launch
    from support.stream_fixture import write_data

    write_data(tmp_path / "data")
    finals = {}
    for workers in (1, 0):
        run = tmp_path / f"run{workers}"
        launch(stream_fixture.__file__, [tmp_path / "data", run, workers])
        ranks = [load_file(run / f"final_rank{r}.safetensors") for r in (0, 1)]
        assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # DDP kept the ranks in step
        finals[workers] = ranks[0]
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])  # workers change nothing
