"""A map-style dataset of ``Sample``s with images turned into pixel tensors.

Images are decoded and preprocessed once and kept in memory when the set is small (the demo
world; a feature cache at real scale stores Q-Former outputs instead), or on each access
otherwise. The dataset returns indices into a table of unique images so a frozen VPG's
outputs can be cached per image rather than per (image, caption) pair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vltool.data.sample import Sample
from vltool.errors import UserError


def resolve_image(image: Any, root: str | Path | None) -> Any:
    if isinstance(image, (str, Path)) and root is not None and not Path(image).is_absolute():
        return Path(root) / image
    return image


class ImageTable:
    """Unique images of a sample list, preprocessed on demand and optionally memoised."""

    def __init__(self, images: Sequence[Any], preprocess: Callable[[Any], torch.Tensor], keep: bool) -> None:
        self.images = list(images)
        self.preprocess = preprocess
        self.keep = keep
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        if index in self._cache:
            return self._cache[index]
        try:
            tensor = self.preprocess(self.images[index])
        except (OSError, ValueError, SyntaxError) as err:  # a corrupt image discovered late: name it
            raise UserError(f"cannot read image {self.images[index]}: {err}") from None
        if self.keep:
            self._cache[index] = tensor
        return tensor


class VLDataset(Dataset):
    """(image index or -1, prompt, answer) rows over an ``ImageTable``."""

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocess: Callable[[Any], torch.Tensor] | None,
        image_root: str | Path | None = None,
        keep_images: bool = True,
    ) -> None:
        keys: dict[str, int] = {}
        images: list[Any] = []
        self.rows: list[tuple[int, str, str]] = []
        for sample in samples:
            index = -1
            if sample.image is not None:
                image = resolve_image(sample.image, image_root)
                key = str(image)
                if key not in keys:
                    keys[key] = len(images)
                    images.append(image)
                index = keys[key]
            self.rows.append((index, sample.prompt, sample.answer))
        self.samples = list(samples)
        self.images = ImageTable(images, preprocess or (lambda _: torch.zeros(0)), keep_images)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, str, str]:
        return self.rows[index]


def image_preprocessor(processor: Any) -> Callable[[Any], torch.Tensor]:
    """Path or PIL image -> [3, H, W] float tensor through an HF image processor."""
    from PIL import Image

    def run(image: Any) -> torch.Tensor:
        if not isinstance(image, Image.Image):
            with Image.open(image) as handle:
                image = handle.convert("RGB")
        return processor(images=image, return_tensors="pt")["pixel_values"][0]

    return run
