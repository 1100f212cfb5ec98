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
    from support.real_layouts import IMAGE_SIZE
    from transformers import BlipImageProcessor

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


class _OneProcess:
    is_main_process, process_index, num_processes = True, 0, 1

    def wait_for_everyone(self) -> None:
        pass


def test_the_feature_cache_holds_the_same_rows_from_uint8_pixels(tmp_path: Path, monkeypatch) -> None:
    """Same key (it names the processor, not the pixel format) and the same stored rows either way."""
    from vltool.data import feature_cache as fc
    from vltool.data.sample import Sample
    from vltool.data.vl_dataset import VLDataset

    processor = _blip2_processor()
    samples = [Sample(str(i), str(_jpeg(tmp_path, f"{i}.jpg", (64 + 7 * i, 48), i)), "", "a photo") for i in range(5)]
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(8))
    encoder(torch.zeros(1, 3, 16, 16))
    rows = {}
    for uint8 in (False, True):
        monkeypatch.setenv("VLTOOL_HOME", str(tmp_path / f"home-{uint8}"))
        images = VLDataset(samples, image_preprocessor(processor, uint8=uint8)).images
        scale = getattr(images.preprocess, "scale", None)
        assert (scale is not None) == uint8
        key = fc.cache_key("vpg", processor.to_dict(), images.images, torch.float16)
        with torch.no_grad():
            table = fc.build(_OneProcess(), key, len(images), lambda px, s=scale: encoder(normalise(px, s)),
                             fc.image_batches(images, 2, 0), torch.float16, {})
        rows[uint8] = (key, torch.as_tensor(np.asarray(table.array, dtype=np.float32)))
    assert rows[False][0] == rows[True][0]
    assert torch.equal(rows[False][1], rows[True][1])


@pytest.mark.parametrize("augment", ["none", "blip2"])
def test_transfer_trains_the_same_tensors_from_uint8_or_float_pixels(quick_world: Path, tmp_path: Path,
                                                                      augment: str) -> None:
    from safetensors.torch import load_file
    from support.run import invoke

    from vltool.demo.vision import image_processor

    assert uint8_preprocessor(image_processor()) is not None  # the demo models' processor takes the uint8 path
    trained = {}
    for on_device in ("true", "false"):
        out = tmp_path / f"vpg-{on_device}"
        invoke(["transfer", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", "demo:caption",
                "--out", str(out), "warmup.max_steps=1", "train.max_steps=2", "data.max_train_samples=32",
                "train.batch_size=8", f"data.augment={augment}", "warmup.feature_cache=false",
                f"data.device_normalise={on_device}", "train.num_workers=1"])
        trained[on_device] = load_file(out / "vpg.safetensors")
    assert trained["true"].keys() == trained["false"].keys()
    for name, tensor in trained["true"].items():
        assert torch.equal(tensor, trained["false"][name]), name
    if augment != "none":
        return
    # eval / predict: uint8 decoded in a worker, normalised on the model's device, the same captions
    from vltool.data.specs import load_spec
    from vltool.eval.predictors import GenerationSettings, load_predictor

    predictor = load_predictor(str(tmp_path / "vpg-true"))
    samples = load_spec("demo:caption", "val")[:6]
    settings = GenerationSettings(batch_size=4, max_new_tokens=5, workers=1)
    predictor.preprocess = ImagePreprocessor(predictor.preprocess.processor)
    floats = predictor.generate(samples, settings)
    predictor.preprocess = image_preprocessor(predictor.preprocess.processor, uint8=True)
    assert isinstance(predictor.preprocess, UInt8Images)
    assert predictor.generate(samples, settings) == floats


def test_tune_mma_with_lavins_clip_preprocessing_trains_the_same_from_uint8_or_float(quick_world: Path,
                                                                                      tmp_path: Path) -> None:
    """--front-end clip uses LaVIN's transform (bicubic 28 px here, ImageNet mean / std): same adapters, same
    answers and answer NLLs from the MMA predictor either way."""
    from safetensors.torch import load_file
    from support.run import invoke
    from support.tiny_models import tiny_clip

    from vltool.data.specs import load_spec
    from vltool.eval.predictors import GenerationSettings, load_predictor

    torch.manual_seed(0)
    clip = tmp_path / "clip"
    tiny_clip(2).save_pretrained(str(clip))
    trained = {}
    for on_device in ("true", "false"):
        out = tmp_path / f"mma-{on_device}"
        invoke(["tune-mma", "-r", "demo/tune-mma", "--model", "demo-llama", "--front-end", "clip", "--vision",
                str(clip), "--out", str(out), "visual_tokens=2", "train.max_steps=2", "train.batch_size=8",
                "data.max_train_samples=16", "data.val=[]", "train.num_workers=1",
                f"data.device_normalise={on_device}"])
        trained[on_device] = load_file(out / "adapters.safetensors")
    for name, tensor in trained["true"].items():
        assert torch.equal(tensor, trained["false"][name]), name

    predictor = load_predictor(str(tmp_path / "mma-true"))
    processor = predictor.preprocess.processor
    samples = [s for s in load_spec("demo:sqa", "val") if s.image][:4]
    settings = GenerationSettings(batch_size=2, max_new_tokens=4, workers=1)
    predictor.preprocess = ImagePreprocessor(processor)
    floats = predictor.generate(samples, settings), predictor.answer_nll(samples, 2)
    predictor.preprocess = image_preprocessor(processor, uint8=True)
    assert isinstance(predictor.preprocess, UInt8Images)
    assert (predictor.generate(samples, settings), predictor.answer_nll(samples, 2)) == floats
