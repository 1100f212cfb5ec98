"""``vg:PATH`` and ``sbu:PATH``: caption files of the paper's pre-training data, as LAVIS stores them.

LAVIS keeps Visual Genome region captions (``vg_caption.json``) and SBU (``sbu.json``) in the same
shape as its COCO train file: a JSON list of ``{image, caption, image_id?}`` rows, one per caption,
with ``image`` relative to the dataset's image root (``--images``, else the JSON's folder). For
Visual Genome the official ``region_descriptions.json`` (a list of ``{id, regions: [{image_id,
phrase, ...}]}``) is read too: every region phrase becomes a caption of ``IMAGE_ID.jpg``.
"""

from __future__ import annotations

from pathlib import Path

from vltool.data.images import resolve_image_path
from vltool.data.jsonl import data_path, expect_keys, expect_list, expect_str, read_json
from vltool.data.sample import Sample
from vltool.data.sample_table import SampleTable, SampleTableBuilder
from vltool.errors import UserError


def read_caption_list(path: str | Path, images: str | Path | None, kind: str) -> SampleTable:
    path = data_path(str(path), kind)
    rows = expect_list(read_json(path, f"{kind} caption"), path, f"LAVIS {kind} caption")
    if rows and isinstance(rows[0], dict) and "regions" in rows[0]:
        return _vg_regions(rows, path, images)
    samples = SampleTableBuilder()
    for index, row in enumerate(rows):
        where = f"{path} item {index}"
        expect_keys(row, ("image", "caption"), where, f"{kind} caption")
        image, caption = expect_str(row, "image", where), row["caption"]
        if isinstance(caption, list) and caption and all(isinstance(c, str) for c in caption):
            caption = caption[0]
        if not isinstance(caption, str):
            raise UserError(f"{where}: 'caption' must be a string, found {type(caption).__name__}")
        sample_id = str(row.get("image_id", Path(image).stem))
        samples.append(Sample(sample_id, resolve_image_path(image, images, path.parent), "", caption.strip(),
                              [caption.strip()], {"image_file": image}))
    return samples.finish()


def _vg_regions(rows: list, path: Path, images: str | Path | None) -> SampleTable:
    samples = SampleTableBuilder()
    for index, row in enumerate(rows):
        where = f"{path} item {index}"
        expect_keys(row, ("regions",), where, "Visual Genome region description")
        for region in row["regions"]:
            phrase = str(region.get("phrase", "")).strip()
            image_id = region.get("image_id", row.get("id"))
            if not phrase or image_id is None:
                continue
            image = f"{image_id}.jpg"
            samples.append(Sample(str(image_id), resolve_image_path(image, images, path.parent), "", phrase,
                                  [phrase], {"image_file": image}))
    return samples.finish()
