"""A map-style dataset of ``Sample``s whose images are decoded when a batch is built.

Nothing per image is kept: the dataset holds paths, and the collator decodes and preprocesses
the images of each batch, which the DataLoader runs in its worker processes (see
``vltool.training.data_loader``). Memory therefore does not grow with the number of images;
only the batches in flight hold pixels. Rows carry indices into a table of unique images so a
frozen VPG's outputs can be cached per image rather than per (image, caption) pair (the warm-up
feature cache, ``vltool.data.feature_cache``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vltool.data.device_pixels import uint8_preprocessor
from vltool.data.float_pixels import ImagePreprocessor
from vltool.data.sample import Sample
from vltool.data.sample_table import IndexBuilder, SampleTable, StringColumn
from vltool.errors import UserError


def resolve_image(image: Any, root: str | Path | None) -> Any:
    if isinstance(image, (str, Path)) and root is not None and not Path(image).is_absolute():
        return Path(root) / image
    return image


class ImageTable:
    """Unique images of a sample list (paths), decoded and preprocessed on each access.

    ``images`` is kept as given when it is a ``StringColumn`` (one blob, see
    ``vltool.data.sample_table``), not copied into a list of strings that forked workers would copy.
    """

    def __init__(self, images: Sequence[Any], preprocess: Callable[[Any], torch.Tensor]) -> None:
        self.images = images if isinstance(images, StringColumn) else list(images)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            return self.preprocess(self.images[index])
        except (OSError, ValueError, SyntaxError) as err:  # a corrupt image discovered late: name it
            raise UserError(f"cannot read image {self.images[index]}: {type(err).__name__}: {err}") from None


class VLDataset(Dataset):
    """(image index or -1, prompt, answer) rows over an ``ImageTable``.

    The rows are flat arrays (``RowIndex``), so the dataset's size in memory is bytes per sample,
    shared by forked DataLoader workers (#23).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocess: Callable[[Any], torch.Tensor] | None,
        image_root: str | Path | None = None,
    ) -> None:
        index = IndexBuilder(lambda image: resolve_image(image, image_root))
        self.rows = index.rows(samples)
        self.samples = samples if isinstance(samples, SampleTable) else list(samples)
        images = index.images()
        self.images = ImageTable(images, preprocess or _no_pixels)
        # The loader starts worker processes for datasets that decode images.
        self.decodes_images = len(images) > 0 and preprocess is not None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, str, str]:
        return self.rows[index]


def _no_pixels(_: Any) -> torch.Tensor:
    return torch.zeros(0)


def image_preprocessor(processor: Any, uint8: bool = False) -> Callable[[Any], torch.Tensor]:
    """Path or PIL image -> [3, H, W] float tensor through an HF image processor.

    ``uint8``: resized uint8 pixels instead, normalised later on the device with the returned
    function's ``scale`` (``vltool.data.device_pixels``); a processor whose float output that
    cannot reproduce exactly keeps the float path.
    """
    if uint8:
        images = uint8_preprocessor(processor)
        if images is not None:
            return images
    return ImagePreprocessor(processor)
