"""Images to float pixels through an HF image processor: the path every processor supports.

``vltool.data.device_pixels`` checks a processor's uint8 split against this, and falls back to it.
"""

from __future__ import annotations

from typing import Any

import torch


class ImagePreprocessor:
    """Path or PIL image -> [3, H, W] float tensor through an HF image processor.

    A class rather than a closure so that worker processes started with ``spawn`` (macOS,
    Windows) can receive it.
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Any) -> torch.Tensor:
        from PIL import Image

        if not isinstance(image, Image.Image):
            with Image.open(image) as handle:
                image = handle.convert("RGB")
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]
