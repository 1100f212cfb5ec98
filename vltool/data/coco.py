"""``coco:PATH``: COCO captions in LAVIS's Karpathy-split JSON.

LAVIS writes two shapes of the same list: the train file has one row per caption,
``{image, caption: "one string", image_id: "coco_391895"}``; the val/test files have one row per
image, ``{image, caption: [all references]}``. Both are read here: a string caption gives a
training sample, a list gives an evaluation sample whose ``references`` are the list.

The sample id is the integer COCO image id, taken from the trailing digits of the file name
(``val2014/COCO_val2014_000000391895.jpg`` -> ``391895``) because the test files carry no
``image_id``; it is what a predictions file must use. Files named otherwise fall back to
``image_id`` and then to the file stem. The prompt is empty, as in VPGTrans / BLIP-2
pre-training and caption evaluation.
"""

from __future__ import annotations

import re
from pathlib import Path

from vltool.data.images import resolve_image_path
from vltool.data.jsonl import data_path, expect_str, list_rows
from vltool.data.sample import Sample
from vltool.data.sample_table import SampleTable, SampleTableBuilder
from vltool.errors import UserError

_TRAILING_DIGITS = re.compile(r"(\d+)$")


def coco_image_id(image: str, row: dict) -> str:
    """The integer COCO id of an image row, as a string (see the module docstring)."""
    match = _TRAILING_DIGITS.search(Path(image).stem)
    if match:
        return str(int(match.group(1)))
    if "image_id" in row:
        return str(row["image_id"])
    return Path(image).stem


def read_coco(path: str | Path, images: str | Path | None = None) -> SampleTable:
    """Samples of a Karpathy caption file; relative image paths are under ``images`` (the COCO
    root holding ``train2014/`` and ``val2014/``), else beside the JSON file."""
    path = data_path(str(path), "coco")
    samples = SampleTableBuilder()
    for index, where, row in list_rows(path, "COCO caption", "LAVIS Karpathy caption", "Karpathy caption",
                                       ("image", "caption")):
        image = expect_str(row, "image", where)
        caption = row["caption"]
        if isinstance(caption, str):
            refs = [caption]
        elif isinstance(caption, list) and caption and all(isinstance(c, str) for c in caption):
            refs = list(caption)
        else:
            raise UserError(f"{where}: 'caption' must be a string (train file) or a non-empty list of strings "
                            f"(val/test file), found {caption!r:.60}")
        samples.append(Sample(coco_image_id(image, row), resolve_image_path(image, images, path.parent), "",
                              refs[0], refs, {"image_file": image}))
    return samples.finish()
