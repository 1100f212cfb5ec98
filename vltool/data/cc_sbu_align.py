"""``cc_sbu_align:DIR``: MiniGPT-4's 3.4k aligned image-description set, the data of VL-Vicuna's chat stage.

The folder as MiniGPT-4 ships it (github.com/Vision-CAIR/MiniGPT-4 ``dataset/README_2_STAGE.md``):
``DIR/filter_cap.json`` = ``{"annotations": [{"image_id": ..., "caption": ...}, ...]}`` and
``DIR/image/{image_id}.jpg``. Both readers of it, MiniGPT-4's and VPGTrans's
(``minigpt4/datasets/datasets/cc_sbu_dataset.py`` at f1a33af; github.com/VPGTrans/VPGTrans@32e885c
``lavis/datasets/datasets/self_instruct_caption.py`` ``CCSBUAlignDataset``), open
``{image_id}.jpg`` under ``image/`` and train on the caption AS IT IS: their ``text_processor``
(``blip_caption`` in the yamls) is never applied there, so this reader keeps the text unchanged
(no stripping, no lower-casing). Each sample has an empty prompt: the chat layout
(``vltool.models.chat_layout``) draws one of the official instructions for it.
"""

from __future__ import annotations

from pathlib import Path

from vltool.data.jsonl import data_path, expect_keys, read_json
from vltool.data.sample import Sample
from vltool.errors import UserError

ANNOTATIONS = "filter_cap.json"
IMAGES = "image"


def read_cc_sbu_align(root: str | Path) -> list[Sample]:
    """Every annotation of ``DIR/filter_cap.json``, in file order, its image under ``DIR/image/``."""
    root = data_path(str(root), "cc_sbu_align")
    if not root.is_dir():
        raise UserError(f"cc_sbu_align:{root} must be MiniGPT-4's cc_sbu_align folder holding {ANNOTATIONS} "
                        f"and {IMAGES}/")
    path = root / ANNOTATIONS
    data = read_json(path, "cc_sbu_align annotations")
    rows = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected {{\"annotations\": [{{\"image_id\": ..., \"caption\": ...}}, ...]}} "
                        "(MiniGPT-4's filter_cap.json)")
    samples = []
    for index, row in enumerate(rows):
        where = f"{path} annotation {index}"
        expect_keys(row, ("image_id", "caption"), where, "cc_sbu_align annotation")
        caption = row["caption"]
        if not isinstance(caption, str) or not caption.strip():
            raise UserError(f"{where}: 'caption' must be a non-empty string")
        image_id = str(row["image_id"])
        samples.append(Sample(image_id, str(root / IMAGES / f"{image_id}.jpg"), "", caption, [caption],
                              {"image_file": f"{image_id}.jpg"}))
    return samples
