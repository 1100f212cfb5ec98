"""transfer on a LAVIS Karpathy caption file, then eval on COCO and the official VQAv2 files (real formats)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from support.data_files import vqa_files, write
from support.run import invoke

from vltool.artifacts import read_artifact

pytestmark = pytest.mark.usefixtures("one_thread")


def test_transfer_on_coco_then_eval_coco_and_vqav2(quick_world: Path, tmp_path: Path) -> None:
    coco = tmp_path / "coco"
    for image_id, colour in ((42, (250, 0, 0)), (7, (0, 250, 0)), (391895, (0, 0, 250))):
        (coco / "val2014").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 40), colour).save(coco / "val2014" / f"COCO_val2014_{image_id:012d}.jpg")
    train = write(tmp_path / "coco_karpathy_train.json", [
        {"image": "val2014/COCO_val2014_000000000042.jpg", "caption": "a red square", "image_id": "coco_42"},
        {"image": "val2014/COCO_val2014_000000000007.jpg", "caption": "a green square", "image_id": "coco_7"}])
    test = write(tmp_path / "coco_karpathy_test.json", [
        {"image": "val2014/COCO_val2014_000000391895.jpg", "caption": ["a blue square", "a square"]},
        {"image": "val2014/COCO_val2014_000000000042.jpg", "caption": ["a red square"]}])
    vpg = tmp_path / "vpg"
    invoke(["transfer", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", f"coco:{train}",
            "--val-data", f"coco:{train}", "--images", str(coco), "--out", str(vpg),
            "warmup.max_steps=1", "train.max_steps=1", "train.batch_size=2", "eval.every=1"])
    manifest = read_artifact(vpg).manifest
    assert manifest["kind"] == "vpg" and manifest["metrics"]["data_images"] == 2

    q, a = vqa_files(tmp_path)
    result = tmp_path / "eval.json"
    invoke(["eval", str(vpg), "--data", f"coco:{test}", "--data", f"vqav2:{q},{a}", "--images", str(coco),
            "--out", str(result), "--max-new-tokens", "6"])
    report = json.loads(result.read_text())
    caption = report["metrics"][f"coco:{test}"][str(vpg)]
    assert {"BLEU-4", "CIDEr", "ROUGE_L"} <= caption.keys()
    vqa = report["metrics"][f"vqav2:{q},{a}"][str(vpg)]
    assert 0 <= vqa["vqa_accuracy"] <= 100
    vqa_file = tmp_path / report["predictions"][f"{vpg} | vqav2:{q},{a}"]
    rows = [json.loads(line) for line in vqa_file.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["420", "70"]  # prediction ids are the official question ids
