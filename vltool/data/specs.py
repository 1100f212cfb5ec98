"""Data SPECs: ``kind:ARG[,ARG]`` strings naming a dataset, e.g. ``coco:train.json``, ``demo:caption``.

A registry maps each kind to a reader ``(arg, split, images) -> list[Sample]`` so stages and
``vltool eval`` accept the same strings. Unknown kinds name the known ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from vltool.data.jsonl_lines import read_jsonl_rows
from vltool.data.sample import Sample
from vltool.errors import UserError

Reader = Callable[[str, str, str | None], list[Sample]]
READERS: dict[str, Reader] = {}


def register_kind(name: str, reader: Reader) -> None:
    READERS[name] = reader


def parse_spec(spec: str) -> tuple[str, str]:
    if ":" not in spec:
        raise UserError(f"data spec {spec!r} must look like KIND:ARG (e.g. coco:train.json, demo:caption); "
                        f"kinds: {', '.join(sorted(READERS))}")
    kind, arg = spec.split(":", 1)
    if kind not in READERS:
        raise UserError(f"data spec {spec!r}: unknown kind {kind!r}; expected one of {', '.join(sorted(READERS))}")
    return kind, arg


def load_spec(spec: str, split: str = "train", images: str | None = None) -> list[Sample]:
    kind, arg = parse_spec(spec)
    samples = READERS[kind](arg, split, images)
    if not samples:
        raise UserError(f"data spec {spec!r} ({split} split) has no samples")
    return samples


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise UserError(f"{what} file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON (line {err.lineno}): {err.msg}") from None


def read_coco(arg: str, split: str, images: str | None) -> list[Sample]:
    """LAVIS's Karpathy caption JSON: a list of {image, caption (str or list), image_id?}."""
    rows = _read_json(Path(arg), "COCO caption")
    if not isinstance(rows, list) or (rows and not {"image", "caption"} <= set(rows[0])):
        raise UserError(f"{arg} is not a LAVIS Karpathy caption file: expected a list of {{image, caption}} objects")
    samples = []
    for i, row in enumerate(rows):
        refs = row["caption"] if isinstance(row["caption"], list) else [row["caption"]]
        image = str(Path(images) / row["image"]) if images else row["image"]
        sample_id = str(row.get("image_id", Path(row["image"]).stem.split("_")[-1].lstrip("0") or i))
        samples.append(Sample(sample_id, image, "", refs[0], refs))
    return samples


def read_jsonl(arg: str, split: str, images: str | None) -> list[Sample]:
    """One JSON object a line: {image?, prompt, answer, id?}."""
    samples = []
    for number, row in read_jsonl_rows(Path(arg), "JSONL", ("prompt", "answer")):
        image = row.get("image")
        if image and images:
            image = str(Path(images) / image)
        samples.append(Sample(str(row.get("id", number)), image, row["prompt"], row["answer"], [row["answer"]]))
    return samples


def read_demo(arg: str, split: str, images: str | None) -> list[Sample]:
    from vltool.demo.datasets import read_demo as read
    from vltool.demo.home import demo_data_dir

    return read(demo_data_dir(), arg, split)


register_kind("coco", read_coco)
register_kind("jsonl", read_jsonl)
register_kind("demo", read_demo)
