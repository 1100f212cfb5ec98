"""tune-mma and eval on the real data formats: ScienceQA folders, Alpaca and LLaVA JSON (CLIP front end)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from support.data_files import scienceqa_dir, write
from support.run import invoke
from support.tiny_models import tiny_clip
from transformers import CLIPImageProcessor

from vltool.artifacts import read_artifact

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tune_mma_on_scienceqa_alpaca_and_llava_then_eval_scienceqa(quick_world: Path, tmp_path: Path) -> None:
    root = scienceqa_dir(tmp_path / "ScienceQA")
    problems = json.loads((root / "problems.json").read_text())
    problems["8"] = {**problems["2"], "split": "train"}  # an image question in the train split too
    write(root / "problems.json", problems)
    write(root / "pid_splits.json", {"train": ["7", "8"], "test": ["1", "2", "3", "4", "5", "6"]})
    for split, qid in (("train", "8"), ("test", "2"), ("test", "3")):
        (root / "images" / split / qid).mkdir(parents=True)
        Image.new("RGB", (40, 30), (200, 30, 30)).save(root / "images" / split / qid / "image.png")
    alpaca = write(tmp_path / "alpaca.json", [{"instruction": "Say hi.", "input": "", "output": "hi"},
                                              {"instruction": "Add", "input": "1 and 1", "output": "2"}])
    Image.new("RGB", (32, 32), (0, 0, 200)).save(tmp_path / "blue.png")
    llava = write(tmp_path / "llava.json", [{"id": "c1", "image": "blue.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour is it?"}, {"from": "gpt", "value": "Blue."},
        {"from": "human", "value": "Is it red?"}, {"from": "gpt", "value": "No."}]}])
    clip = tmp_path / "clip"
    tiny_clip(4).save_pretrained(str(clip))
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(str(clip))

    out = tmp_path / "mma"
    invoke(["tune-mma", "-r", "demo/tune-mma", "--model", "demo-llama", "--front-end", "clip", "--vision", str(clip),
            "--data", f"scienceqa:{root}", "--data", f"alpaca:{alpaca}", "--data", f"llava:{llava}",
            "--images", str(tmp_path), "--out", str(out), "visual_tokens=2", "data.val=[]",
            "train.max_steps=2", "train.batch_size=4"])
    metrics = read_artifact(out).manifest["metrics"]
    # ScienceQA train: 1 text-only + 1 image question; Alpaca: 2 text-only; LLaVA: one conversation, 2 turns
    assert (metrics["image_samples"], metrics["text_only_samples"]) == (3, 3) and metrics["steps"] == 2

    result = tmp_path / "eval.json"
    invoke(["eval", str(out), "--data", f"scienceqa:{root}", "--out", str(result), "--max-new-tokens", "8"])
    scores = json.loads(result.read_text())["metrics"][f"scienceqa:{root}"][str(out)]
    assert {"accuracy", "NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "unparsed"} <= scores.keys()
    assert 0 <= scores["accuracy"] <= 100 and 0 <= scores["unparsed"] <= 6
