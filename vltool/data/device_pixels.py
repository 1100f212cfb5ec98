"""uint8 pixels from the DataLoader workers, rescaled and normalised on the accelerator.

An image processor resizes (and crops) the decoded uint8 image, then maps every value through a
per-channel affine map: ``(x * rescale_factor - mean) / std``. The workers stop after the resize:
they ship uint8 ``pixel_values`` [B, 3, H, W] (a quarter of the float32 bytes through pinned memory
and over PCIe, and no float arithmetic per pixel in the worker), and the map runs on the device,
right before the vision model.

The map is a lookup table (``PixelScale``): for each channel, the float the processor itself
produces for each of the 256 uint8 values, obtained by running the processor (its own backend,
its own mean / std / rescale_factor and arithmetic) on a 256-pixel ramp. The resize happens on
uint8 in both paths (HF's PIL and torchvision backends both resize before they rescale), so the
table gives bit-identical pixels to the float path, not merely close ones. A processor for which
that does not hold (one that pads, or rescales before resizing) fails the check in
``uint8_preprocessor`` and keeps the float path.

The table lookup returns float32, which the models cast to their vision tower's dtype exactly as
they cast today's float32 pixels (casting to a half dtype here would lose precision where the
vision tower is float32 next to a bf16 LLM, as LaVIN's CLIP front end is).

Where pixels enter a vision model: ``NormalisedLoss`` wraps a stage's loss, and the feature cache,
validation and the predictors call ``normalise`` on the device batch. Float pixels pass unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from vltool.data.float_pixels import ImagePreprocessor


class PixelScale:
    """uint8 value -> the processor's float, per channel: a [C, 256] float32 table."""

    def __init__(self, table: torch.Tensor) -> None:
        if table.ndim != 2 or table.shape[1] != 256:
            raise ValueError(f"a pixel table is [channels, 256], not {list(table.shape)}")
        self.table = table.to(torch.float32).contiguous()
        self._on: dict[torch.device, torch.Tensor] = {}

    def __getstate__(self) -> dict:  # workers and checkpoints get the table, not the device copies
        return {"table": self.table}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["table"])

    @classmethod
    def from_processor(cls, processor: Any) -> PixelScale:
        """The table of an HF image processor: its own output for a 256 x 1 ramp, not resized or cropped."""
        from PIL import Image

        ramp = Image.fromarray(np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2))
        out = processor(images=ramp, return_tensors="pt", do_resize=False, do_center_crop=False)["pixel_values"]
        return cls(out[0][:, 0, :])

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [..., C, H, W] -> float32 on the same device; any other dtype passes unchanged."""
        if pixels.dtype != torch.uint8:
            return pixels
        table = self._on.get(pixels.device)
        if table is None:
            table = self._on[pixels.device] = self.table.to(pixels.device)
        channels = pixels.shape[-3]
        if channels != table.shape[0]:
            raise ValueError(f"uint8 pixels with {channels} channels for a {table.shape[0]}-channel table")
        # one index_select per channel with int32 indices: about the cost of a float affine map
        # (x * a + b) on a CPU, where one gather over int64 indices is 3x slower
        out = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device)
        for c in range(channels):
            values = pixels.select(-3, c)
            out.select(-3, c).copy_(table[c].index_select(0, values.reshape(-1).int()).view(values.shape))
        return out


def normalise(pixels: torch.Tensor | None, scale: PixelScale | None) -> torch.Tensor | None:
    """``scale(pixels)`` for uint8 pixels; float pixels (or no scale, no pixels) pass unchanged."""
    if pixels is None or scale is None or pixels.dtype != torch.uint8:
        return pixels
    return scale(pixels)


def normalise_batch(batch: Mapping[str, Any], scale: PixelScale | None) -> Mapping[str, Any]:
    """The batch with uint8 ``pixel_values`` normalised (a new dict; other entries are shared)."""
    pixels = batch.get("pixel_values") if isinstance(batch, Mapping) else None
    if pixels is None or scale is None or pixels.dtype != torch.uint8:
        return batch
    return {**batch, "pixel_values": scale(pixels)}


class NormalisedLoss:
    """``loss_fn(model, batch)`` on the batch with its uint8 ``pixel_values`` normalised on the device.

    The training loop moves the uint8 batch to the device; this runs the lookup there, right
    before the model, so neither the loop nor the models know about uint8 pixels.
    """

    def __init__(self, loss_fn: Callable[[Any, Any], torch.Tensor], scale: PixelScale | None) -> None:
        self.loss_fn, self.scale = loss_fn, scale

    def __call__(self, model: Any, batch: Any) -> torch.Tensor:
        return self.loss_fn(model, normalise_batch(batch, self.scale))


class UInt8Images:
    """Path or PIL image -> uint8 [3, H, W]: the processor's resize / crop without rescale or normalise.

    ``scale`` maps the result to exactly what the processor returns (``PixelScale``). A class
    rather than a closure so that worker processes started with ``spawn`` can receive it.
    """

    def __init__(self, processor: Any, scale: PixelScale | None = None) -> None:
        self.processor = processor
        self.scale = scale or PixelScale.from_processor(processor)

    def __call__(self, image: Any) -> torch.Tensor:
        from PIL import Image

        if not isinstance(image, Image.Image):
            with Image.open(image) as handle:
                image = handle.convert("RGB")
        out = self.processor(images=image, return_tensors="pt", do_rescale=False,
                             do_normalize=False)["pixel_values"][0]
        if out.dtype != torch.uint8:  # a backend that returns the resized values as floats
            out = out.round().clamp(0, 255).to(torch.uint8)
        return out


def uint8_preprocessor(processor: Any) -> UInt8Images | None:
    """``UInt8Images`` for ``processor`` when uint8-then-``scale`` equals its float output, else None.

    Checked once on a small random image: a processor that rescales before it resizes, pads, or
    otherwise does not map uint8 values pointwise after its resize keeps the float path.
    """
    from PIL import Image

    try:
        images = UInt8Images(processor)
        probe = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8))
        direct = ImagePreprocessor(processor)(probe)
        through = images.scale(images(probe))
    except Exception:  # noqa: BLE001 -- any processor that cannot be split this way keeps the float path
        return None
    if through.shape != direct.shape or not torch.allclose(through, direct.to(torch.float32), rtol=0, atol=1e-6):
        return None
    return images


def pixels_on_device(setting: bool | None = None) -> bool:
    """``data.device_normalise``: an explicit true / false, or (None) true unless the run is on the CPU.

    On a CPU-only run the "device" is the training process itself, which then does the work the
    workers stopped doing: measured on 2 cores (``bench/results/cpu_device_normalise.txt``) that is
    no faster with 0 workers and 0.89x with 2, so there the workers keep normalising.
    """
    if setting is not None:
        return setting
    from accelerate import PartialState

    return PartialState().device.type != "cpu"


def scale_of(preprocess: Any) -> PixelScale | None:
    """The ``PixelScale`` a preprocess function's uint8 output needs (None for float preprocessing)."""
    return getattr(preprocess, "scale", None)
