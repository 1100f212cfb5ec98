"""A 2-process run over a ratio mixture of a caption list and ``wds:`` shards, with DataLoader workers.

``python tests/support/stream_fixture.py DATA_DIR RUN_DIR WORKERS`` (under ``accelerate launch``): trains a
tiny regressor on the images' pixels for 4 steps and writes each rank's final weights to
RUN_DIR/final_rank{R}.safetensors. The test writes the data (``write_data``) before launching.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from support.data_files import Regressor, ToPixels, jpeg_bytes, write_shard
from vltool.data.mixture import MixedVLData, Source
from vltool.data.sample import Sample
from vltool.data.wds import shard_paths
from vltool.training.loop import make_accelerator, train
from vltool.training.settings import TrainSettings


def write_data(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(4):
        write_shard(folder / f"{s:03d}.tar", [f"s{s}k{i}" for i in range(6)])
    for i in range(12):
        (folder / f"img{i}.jpg").write_bytes(jpeg_bytes(100 + i))


class Collate:
    def __call__(self, rows):
        pixels = torch.stack([r[0] for r in rows])
        target = torch.tensor([float(len(r[2]) % 5) for r in rows])
        return {"pixel_values": pixels, "target": target}


def loss(model, batch):
    return torch.nn.functional.mse_loss(model(batch["pixel_values"]), batch["target"])


def main(argv: list[str]) -> None:
    data, run_dir, workers = Path(argv[0]), Path(argv[1]), int(argv[2])
    samples = [Sample(str(i), str(data / f"img{i}.jpg"), "", f"caption {i}") for i in range(12)]
    sources = [Source("jsonl:x@0.4", 0.4, samples=samples, size=12),
               Source("wds:y@0.6", 0.6, shards=shard_paths(str(data / "{000..003}.tar")), size=24)]
    dataset = MixedVLData(sources, ToPixels())
    torch.manual_seed(0)
    settings = TrainSettings(lr=1e-2, max_steps=4, batch_size=8, micro_batch_size=2, precision="no", seed=3,
                             num_workers=workers, log_every=1)
    accelerator = make_accelerator("no", cpu=True)
    result = train(Regressor(), loss, dataset, settings, collate_fn=Collate(), accelerator=accelerator)
    state = {k: v.detach().clone().contiguous() for k, v in result.model.state_dict().items()}
    run_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(run_dir / f"final_rank{accelerator.process_index}.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1:])
