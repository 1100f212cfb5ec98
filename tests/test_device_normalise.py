"""uint8 pixels from the workers, normalised on the device: the same numbers as the float path.

Both paths resize / crop on uint8 (the HF processors resize before they rescale, and the BLIP-2
augmentation crops and flips a PIL image), so the lookup table built from the processor's own
output gives bit-identical pixels; the tests assert exact equality, which is stronger than the
1e-5 the issue asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vltool.data.augment import Blip2TrainTransform
from vltool.data.device_pixels import NormalisedLoss, PixelScale, UInt8Images, normalise, uint8_preprocessor
from vltool.data.vl_dataset import ImagePreprocessor, image_preprocessor


def _jpeg(tmp_path: Path, name: str, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 180, size[0], dtype=np.float32)[None, :, None]
    pixels = (rng.integers(0, 76, (size[1], size[0], 3)) + ramp).astype(np.uint8)
    path = tmp_path / name
    Image.fromarray(pixels).save(path, quality=90)
    return path


def _blip2_processor():
    from transformers import BlipImageProcessor

    from tests.real_layouts import IMAGE_SIZE

    return BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})  # as the real-layout BLIP-2 folder


def _lavin_processor():
    from vltool.models.mma.loading import lavin_image_processor

    return lavin_image_processor(224)


def _clip_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})


@pytest.mark.parametrize("make", [_blip2_processor, _lavin_processor, _clip_processor], ids=["blip2", "lavin", "clip"])
def test_uint8_then_table_is_the_processors_float_output(tmp_path: Path, make) -> None:
    processor = make()
    float_path = ImagePreprocessor(processor)
    uint8_path = image_preprocessor(processor, uint8=True)
    assert isinstance(uint8_path, UInt8Images)
    paths = [_jpeg(tmp_path, f"{i}.jpg", size, i) for i, size in enumerate([(640, 480), (97, 131), (300, 300)])]
    expected = torch.stack([float_path(p) for p in paths])
    shipped = torch.stack([uint8_path(p) for p in paths])
    assert shipped.dtype == torch.uint8 and shipped.shape == expected.shape
    assert shipped.element_size() * 4 == expected.element_size()
    got = normalise(shipped, uint8_path.scale)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert torch.equal(got, expected)  # bit-identical: both paths resize the same uint8 image


def test_the_table_follows_the_processors_own_statistics() -> None:
    processor = _lavin_processor()
    table = PixelScale.from_processor(processor).table
    values = torch.arange(256, dtype=torch.float64)
    mean, std = torch.tensor(processor.image_mean)[:, None], torch.tensor(processor.image_std)[:, None]
    torch.testing.assert_close(table.double(), (values * processor.rescale_factor - mean) / std, rtol=0, atol=1e-6)


def test_augmented_uint8_crops_equal_the_normalised_ones_for_the_same_seed(tmp_path: Path) -> None:
    processor = _blip2_processor()
    normalised = Blip2TrainTransform(processor)
    raw = Blip2TrainTransform(processor, normalise=False)
    for i, size in enumerate([(640, 480), (97, 131)]):
        with Image.open(_jpeg(tmp_path, f"{i}.jpg", size, i)) as handle:
            image = handle.convert("RGB")
        for seed in (0, 1, 7, 1_000_000_007 + 3):
            crop = raw(image, seed)
            assert crop.dtype == torch.uint8
            assert torch.equal(normalise(crop, raw.pixel_scale), normalised(image, seed))


def test_float_pixels_pass_unchanged_and_batches_keep_their_other_entries() -> None:
    scale = PixelScale.from_processor(_blip2_processor())
    floats = torch.randn(2, 3, 4, 4)
    assert normalise(floats, scale) is floats
    assert normalise(None, scale) is None
    pixels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    seen = {}

    def loss(model, batch):
        seen.clear()
        seen.update(batch)
        return torch.zeros(())

    ids = torch.arange(5)
    NormalisedLoss(loss, scale)(None, {"pixel_values": pixels, "input_ids": ids})
    assert seen["input_ids"] is ids
    assert torch.equal(seen["pixel_values"], torch.stack([scale(p) for p in pixels]))
    NormalisedLoss(loss, scale)(None, {"input_ids": ids})
    assert set(seen) == {"input_ids"}


class _RescalesFirst:
    """A processor whose float output a uint8 resize cannot reproduce: it ignores the uint8 request."""

    def __init__(self) -> None:
        self.inner = _blip2_processor()

    def __call__(self, images, return_tensors="pt", **kwargs):
        kwargs.pop("do_rescale", None), kwargs.pop("do_normalize", None)
        return self.inner(images=images, return_tensors=return_tensors, **kwargs)


def test_a_processor_that_fails_the_check_keeps_the_float_path() -> None:
    processor = _RescalesFirst()
    assert uint8_preprocessor(processor) is None
    assert isinstance(image_preprocessor(processor, uint8=True), ImagePreprocessor)


def test_the_preprocessor_and_table_survive_pickling_for_spawned_workers() -> None:
    import pickle

    images = image_preprocessor(_blip2_processor(), uint8=True)
    images.scale(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))  # a device copy must not travel
    again = pickle.loads(pickle.dumps(images))
    assert torch.equal(again.scale.table, images.scale.table)
    assert again.scale._on == {}
