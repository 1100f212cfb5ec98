"""Collating VL rows into model batches, from pixels or from a per-image feature cache."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vltool.data.vl_dataset import VLDataset


class VLCollator:
    """(image index, prompt, answer) rows -> token layout + pixel_values or cached query_output.

    With ``features`` (a [n_images, ...] tensor, or the memory-mapped ``FeatureTable`` of the
    warm-up's feature cache) the batch carries ``query_output`` rows instead of pixels. Otherwise
    the images of the batch are decoded here, which runs in the DataLoader's worker processes.
    """

    def __init__(self, dataset: VLDataset, layout, features=None) -> None:
        self.dataset = dataset
        self.layout = layout
        self.features = features

    def __call__(self, rows: Sequence[tuple[int, str, str]]) -> dict[str, torch.Tensor]:
        batch = self.layout.training([r[1] for r in rows], [r[2] for r in rows])
        index = [r[0] for r in rows]
        if self.features is not None:
            batch["query_output"] = self.features[index]
        else:
            batch["pixel_values"] = torch.stack(
                [i if isinstance(i, torch.Tensor) else self.dataset.images[i] for i in index])
        return batch


@torch.no_grad()
def compute_features(encode, images, batch_size: int = 256) -> torch.Tensor:
    """Run a frozen encoder once over every unique image (the feature cache)."""
    out = []
    for start in range(0, len(images), batch_size):
        pixels = torch.stack([images[i] for i in range(start, min(len(images), start + batch_size))])
        out.append(encode(pixels))
    return torch.cat(out)
