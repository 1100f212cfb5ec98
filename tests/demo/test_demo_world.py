"""The demo world: deterministic data, loadable HF folders, quality figures in build manifests."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Blip2ForConditionalGeneration, Blip2Processor

from vltool.data.sample import Sample
from vltool.demo.datasets import caption_attributes, caption_scores, read_demo, write_world_data
from vltool.demo.world import LETTERS, OPTION_SETS, SYNONYMS


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_world_data_is_deterministic_per_seed(tmp_path: Path) -> None:
    sizes = {"train": 40, "val": 5, "test": 5}
    write_world_data(tmp_path / "a", seed=3, sizes=sizes)
    write_world_data(tmp_path / "b", seed=3, sizes=sizes)
    write_world_data(tmp_path / "c", seed=4, sizes=sizes)
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert _tree_hash(tmp_path / "a") != _tree_hash(tmp_path / "c")
    captions = read_demo(tmp_path / "a", "caption", "train")
    assert all(Path(s.image).suffix == ".png" and Path(s.image).is_file() for s in captions)

    sqa = read_demo(tmp_path / "a", "sqa", "train")
    assert {s.meta["category"] for s in sqa} == {"IMG", "TXT", "NO"}  # image-needing and text-only items
    for s in sqa:
        assert s.has_image == (s.meta["category"] == "IMG")
        assert s.prompt.startswith("Question: ") and s.prompt.endswith("\nResponse:")
        # the answer carries the space the world's documents put after "Response:" (LaVIN's collator adds none)
        assert s.answer.startswith(f" The answer is {LETTERS[s.meta['answer_index']]}. BECAUSE: ")
        assert s.references == [s.answer.lstrip()]
        # each question type has one fixed option list, in a fixed order
        assert any(tuple(s.meta["choices"]) in groups for groups in OPTION_SETS.values())
    vqa = read_demo(tmp_path / "a", "vqa", "val")
    assert vqa[0].prompt.startswith("Question: ") and vqa[0].prompt.endswith(" Answer:")
    assert read_demo(tmp_path / "a", "text", "val")[0].image is None


def test_caption_scoring_maps_synonyms_to_attributes() -> None:
    assert caption_attributes("there is a large crimson disc at the left") == {
        "colour": "red", "shape": "circle", "size": "big", "pos": "left"}
    words = [w for syns in SYNONYMS.values() for w in syns]
    assert len(words) == len(set(words))  # no word names two attribute values

    attributes = {"colour": "red", "shape": "circle", "size": "big", "pos": "left"}
    truth = Sample("1", "x.png", "", "", meta={"attributes": attributes})
    predictions = ["a big red circle on the left", "a small scarlet box on the west side"]
    scores = caption_scores(predictions, [truth, truth])
    # the second caption names colour and position right (as synonyms), shape and size wrong
    assert scores["colour_acc"] == 100.0 and scores["pos_acc"] == 100.0
    assert scores["shape_acc"] == 50.0 and scores["scene_acc"] == 50.0
    assert scores["attr_acc"] == pytest.approx((100 + 50 + 50 + 100) / 4)


def test_home_follows_vltool_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vltool.demo.home import DEMO_MODELS, demo_model_paths, vltool_home, world_dir

    monkeypatch.setenv("VLTOOL_HOME", str(tmp_path))
    monkeypatch.delenv("VLTOOL_DEMO_PROFILE", raising=False)
    assert vltool_home() == tmp_path
    paths = demo_model_paths(seed=1)
    assert set(paths) == set(DEMO_MODELS)
    assert all(p.parent.parent == world_dir(1) and world_dir(1).parent == tmp_path for p in paths.values())
    monkeypatch.delenv("VLTOOL_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert vltool_home() == tmp_path / "cache" / "vltool"


@pytest.fixture
def quick_summary(quick_world: Path) -> dict:
    from vltool.demo.home import world_dir

    return json.loads((world_dir(0, quick_world, "quick") / "world.json").read_text())


def test_quick_world_builds_loadable_hf_folders_with_metrics(quick_summary: dict) -> None:
    root = Path(quick_summary["root"])
    assert quick_summary["items"]["tokenizers"]["caption_words"] > 64  # wider than demo-opt-s's embeddings
    widths = {}
    for name in ("demo-opt-s", "demo-opt-l", "demo-llama"):
        model = AutoModelForCausalLM.from_pretrained(root / "models" / name)
        tok = AutoTokenizer.from_pretrained(root / "models" / name)
        assert model.config.vocab_size == len(tok) and tok("a red box")["input_ids"][0] == tok.bos_token_id
        manifest = json.loads((root / "models" / name / "build.json").read_text())
        assert {"val_loss", "copy_accuracy", "sqa_text", "instruction"} <= manifest["metrics"].keys()
        assert manifest["build_s"] > 0 and manifest["build_cpu_s"] > 0
        widths[name] = model.config.hidden_size
    assert widths["demo-opt-l"] > widths["demo-opt-s"]
    llama = AutoModelForCausalLM.from_pretrained(root / "models" / "demo-llama")
    assert type(llama).__name__ == "LlamaForCausalLM"
    opt_tok = AutoTokenizer.from_pretrained(root / "models" / "demo-opt-s")
    llama_tok = AutoTokenizer.from_pretrained(root / "models" / "demo-llama")
    assert opt_tok.tokenize("azure pyramid") != llama_tok.tokenize("azure pyramid")
    vision = json.loads((root / "vision" / "build.json").read_text())
    assert set(vision["metrics"]) == {"colour", "shape", "size", "pos"}

    source = root / "models" / "demo-blip2-opt-s"
    model = Blip2ForConditionalGeneration.from_pretrained(source).eval()
    processor = Blip2Processor.from_pretrained(source)
    metrics = json.loads((source / "build.json").read_text())["metrics"]
    assert {"attr_acc", "scene_acc", "colour_acc", "shape_acc"} <= metrics.keys()
    # the saved folder, run by plain transformers, captions exactly as the trained model did
    assert metrics["hf_attr_acc"] == pytest.approx(metrics["attr_acc"])
    assert metrics["hf_scene_acc"] == pytest.approx(metrics["scene_acc"])
    assert "tmp" not in model.config.text_config.name_or_path

    from PIL import Image

    image = Image.open(read_demo(root / "data", "caption", "val")[0].image)
    inputs = processor(images=image, text="", return_tensors="pt")
    q, image_token = model.config.num_query_tokens, model.config.image_token_index
    assert inputs["input_ids"][0].tolist() == [image_token] * q + [processor.tokenizer.bos_token_id]
    assert inputs["pixel_values"].shape[-1] == model.config.vision_config.image_size
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_rebuild_uses_the_cache(quick_summary: dict, quick_world: Path) -> None:
    from vltool.demo.build import build_world

    again = build_world(seed=0, home=quick_world, quick=True)
    assert again["items"] == quick_summary["items"]  # nothing rebuilt: same manifests, same build times


def test_jobs_give_identical_weights_in_a_worker_and_in_process(quick_world_home: Path,
                                                                tmp_path: Path) -> None:
    """One torch thread per job: the world does not depend on how many workers built it."""
    from vltool.demo.build import _Progress, _run_jobs
    from vltool.demo.home import world_dir
    from vltool.demo.jobs import PROFILES
    from vltool.training.progress import NullReporter

    quick = PROFILES["quick"]
    tiny = replace(quick, lm_steps={**quick.lm_steps, "demo-llama": 4}, vision_steps=4, vision_images=64)
    jobs = ["vision", "demo-llama"]
    for name, workers in (("in-process", 1), ("workers", 2)):
        root = tmp_path / name
        shutil.copytree(world_dir(0, quick_world_home, "quick") / "tokenizers", root / "tokenizers")
        (root / "models").mkdir()
        progress = _Progress(NullReporter(), {j: tiny.job_steps()[j] for j in jobs})
        _run_jobs(jobs, root, 0, tiny, False, workers, progress)
        assert progress.done == {"vision": 4, "demo-llama": 4}
    for rel in ("vision/model.safetensors", "models/demo-llama/model.safetensors"):
        assert (tmp_path / "in-process" / rel).read_bytes() == (tmp_path / "workers" / rel).read_bytes()

    shutil.rmtree(tmp_path / "workers" / "tokenizers")
    with pytest.raises(RuntimeError, match="building demo-llama failed"):
        _run_jobs(["demo-llama"], tmp_path / "workers", 0, tiny, True, 2,
                  _Progress(NullReporter(), {"demo-llama": 4}))
