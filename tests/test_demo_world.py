"""The demo world: deterministic data, loadable HF folders, quality figures in manifests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Blip2ForConditionalGeneration, Blip2Processor

from vltool.demo.datasets import caption_attributes, caption_scores, read_demo, write_world_data
from vltool.demo.world import SYNONYMS


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_world_data_is_deterministic_per_seed(tmp_path: Path) -> None:
    sizes = {"train": 20, "val": 5, "test": 5}
    write_world_data(tmp_path / "a", seed=3, sizes=sizes)
    write_world_data(tmp_path / "b", seed=3, sizes=sizes)
    write_world_data(tmp_path / "c", seed=4, sizes=sizes)
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert _tree_hash(tmp_path / "a") != _tree_hash(tmp_path / "c")
    sqa = read_demo(tmp_path / "a", "sqa", "train")
    assert {s.has_image for s in sqa} == {True, False}  # image-needing and text-only items
    assert all(s.answer.startswith("The answer is ") for s in sqa)


def test_caption_scoring_maps_synonyms_to_attributes() -> None:
    assert caption_attributes("there is a large crimson disc at the left") == {
        "colour": "red", "shape": "circle", "size": "big", "pos": "left"}
    assert len({w for syns in SYNONYMS.values() for w in syns}) == 40  # 3 synonyms for 12 words, 4 positions

    class S:
        meta = {"attributes": {"colour": "red", "shape": "circle", "size": "big", "pos": "left"}}

    scores = caption_scores(["a big red circle on the left", "a small red box on the left"], [S(), S()])
    # second caption gets colour and position right, shape and size wrong
    assert scores["colour_acc"] == 100.0 and scores["shape_acc"] == 50.0 and scores["scene_acc"] == 50.0
    assert scores["attr_acc"] == pytest.approx((100 + 50 + 50 + 100) / 4)


@pytest.fixture
def quick_summary(quick_world: Path) -> dict:
    from vltool.demo.home import world_dir

    return json.loads((world_dir(0, quick_world, "quick") / "world.json").read_text())


def test_quick_world_builds_loadable_hf_folders_with_metrics(quick_summary: dict) -> None:
    root = Path(quick_summary["root"])
    for name in ("demo-opt-s", "demo-opt-l", "demo-llama"):
        model = AutoModelForCausalLM.from_pretrained(root / "models" / name)
        tok = AutoTokenizer.from_pretrained(root / "models" / name)
        assert model.config.vocab_size == len(tok)
        manifest = json.loads((root / "models" / name / "build.json").read_text())
        assert {"val_loss", "copy_accuracy"} <= manifest["metrics"].keys()
    assert type(AutoModelForCausalLM.from_pretrained(root / "models" / "demo-llama")).__name__ == "LlamaForCausalLM"
    opt_tok = AutoTokenizer.from_pretrained(root / "models" / "demo-opt-s")
    llama_tok = AutoTokenizer.from_pretrained(root / "models" / "demo-llama")
    assert opt_tok.tokenize("azure pyramid") != llama_tok.tokenize("azure pyramid")

    source = root / "models" / "demo-blip2-opt-s"
    model = Blip2ForConditionalGeneration.from_pretrained(source).eval()
    processor = Blip2Processor.from_pretrained(source)
    manifest = json.loads((source / "build.json").read_text())
    assert {"attr_acc", "scene_acc"} <= manifest["metrics"].keys()
    from PIL import Image

    image = Image.open(read_demo(root / "data", "caption", "val")[0].image)
    inputs = processor(images=image, text="", return_tensors="pt")
    image_token = model.config.image_token_index
    assert (inputs["input_ids"] == image_token).sum() == model.config.num_query_tokens
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_rebuild_uses_the_cache(quick_summary: dict, quick_world: Path) -> None:
    from vltool.demo.build import build_world

    again = build_world(seed=0, home=quick_world, quick=True)
    assert again["items"] == quick_summary["items"]  # nothing rebuilt: same manifests, same build times
