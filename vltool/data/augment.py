"""BLIP-2's training image transform, deterministic per drawn sample.

LAVIS's ``blip2_image_train`` processor: a random resized crop covering 50-100% of the image
area (aspect ratio 3/4-4/3, bicubic) to the model's input size, a horizontal flip with
probability 0.5, then the model's normalisation. Here the randomness comes from a generator
seeded by (run seed, the sample's draw number in the run), never from a process's RNG, so the
crops are the same with any number of DataLoader workers and after ``--resume``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from vltool.data.device_pixels import PixelScale

AUGMENTS = ("none", "blip2")


class Blip2TrainTransform:
    """PIL image + draw seed -> normalised [3, H, W] tensor (H, W, mean, std from an HF image processor).

    ``normalise=False``: the uint8 [3, H, W] crop instead, normalised on the device with ``pixel_scale``.
    """

    def __init__(self, processor: Any, scale: tuple[float, float] = (0.5, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), normalise: bool = True) -> None:
        size = getattr(processor, "size", None) or {}
        height = size.get("height") or size.get("shortest_edge") or 224
        width = size.get("width") or size.get("shortest_edge") or height
        self.size = (int(width), int(height))
        self.mean = np.asarray(getattr(processor, "image_mean", None) or [0.48145466, 0.4578275, 0.40821073],
                               dtype=np.float32)
        self.std = np.asarray(getattr(processor, "image_std", None) or [0.26862954, 0.26130258, 0.27577711],
                              dtype=np.float32)
        self.scale, self.ratio = scale, ratio
        self.normalise = normalise

    @property
    def pixel_scale(self):
        """With ``normalise=False`` the transform returns uint8; this maps it to the normalised floats.

        The table is this transform's own arithmetic applied to every uint8 value, so uint8 then
        the table is bit-identical to ``normalise=True`` (``vltool.data.device_pixels``).
        """

        values = np.arange(256, dtype=np.float32)[:, None].repeat(3, axis=1)
        return PixelScale(torch.from_numpy(((values / 255.0 - self.mean) / self.std).T.copy()))

    def crop_box(self, width: int, height: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop box rule (10 tries, then a centred crop of clamped ratio)."""
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            u = torch.rand(3, generator=generator).tolist()
            target = area * (self.scale[0] + u[0] * (self.scale[1] - self.scale[0]))
            aspect = math.exp(log_lo + u[1] * (log_hi - log_lo))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                left = int(u[2] * (width - w + 1)) if width > w else 0
                top = int(torch.rand(1, generator=generator).item() * (height - h + 1)) if height > h else 0
                return left, top, left + w, top + h
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, image: Any, seed: int) -> torch.Tensor:
        from PIL import Image

        generator = torch.Generator().manual_seed(seed)
        image = image.convert("RGB")
        box = self.crop_box(image.width, image.height, generator)
        image = image.resize(self.size, Image.Resampling.BICUBIC, box=box)
        if torch.rand(1, generator=generator).item() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if not self.normalise:
            return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
        array = (np.asarray(image, dtype=np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()
