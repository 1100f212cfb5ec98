"""Opening images and checking a whole dataset's images before training."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vltool.data.images import check_images, open_image, resolve_image_path, usable_samples
from vltool.data.sample import Sample
from vltool.errors import UserError


def test_open_image_converts_to_rgb_and_names_bad_files(tmp_path: Path) -> None:
    Image.new("P", (4, 3), 5).save(tmp_path / "palette.png")
    image = open_image(tmp_path / "palette.png")
    assert image.mode == "RGB" and image.size == (4, 3)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match=r"image .*bad.png cannot be read"):
        open_image(tmp_path / "bad.png")
    with pytest.raises(UserError, match=r"image .*gone.png does not exist"):
        open_image(tmp_path / "gone.png")


def test_resolve_image_path(tmp_path: Path) -> None:
    assert resolve_image_path("a/b.jpg", "/root", tmp_path) == "/root/a/b.jpg"
    assert resolve_image_path("a/b.jpg", None, tmp_path) == str(tmp_path / "a" / "b.jpg")
    assert resolve_image_path("/abs/c.jpg", "/root", tmp_path) == "/abs/c.jpg"


def test_check_images_counts_distinct_images_and_affected_samples(tmp_path: Path) -> None:
    Image.new("RGB", (2, 2)).save(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"not an image")
    good, corrupt, missing = (str(tmp_path / n) for n in ("good.png", "corrupt.png", "missing.png"))
    samples = [Sample("1", good, "", "a"), Sample("2", good, "", "b"), Sample("3", missing, "", "c"),
               Sample("4", missing, "", "d"), Sample("5", corrupt, "", "e"), Sample("6", None, "", "text only")]
    report = check_images(samples)
    # 3 distinct images among 5 image samples; 2 bad images, used by 3 samples
    assert (report.checked, report.samples_with_images, report.affected_samples) == (3, 5, 3)
    assert report.missing == [missing] and list(report.corrupt) == [corrupt] and not report.ok
    assert report.as_metrics() == {"images": 3, "bad_images": 2, "missing_images": 1, "corrupt_images": 1,
                                   "dropped_samples": 3}
    assert report.summary("train data").startswith("train data: 2 of 3 images cannot be read (1 missing, 1 corrupt; ")
    with pytest.raises(UserError, match=r"2 of 3 images cannot be read .*missing.png: missing.*--skip-bad-images"):
        usable_samples(samples, skip_bad=False)
    kept, _ = usable_samples(samples, skip_bad=True)
    assert [s.id for s in kept] == ["1", "2", "6"]
