"""merge writes a plain HF BLIP-2 folder with vltool's outputs; eval scores models and saved predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from support.run import invoke, ok, vltool
from typer.testing import CliRunner

from vltool.cli import app
from vltool.errors import UserError

runner = CliRunner()




@pytest.fixture
def vpg(quick_world: Path, tmp_path: Path) -> Path:
    out = tmp_path / "vpg"
    invoke(["transfer", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", "demo:caption", "--out",
            str(out), "warmup.max_steps=2", "train.max_steps=2", "data.max_train_samples=64", "train.batch_size=16"])
    return out


def test_merged_blip2_folder_matches_vltool_forward(vpg: Path, tmp_path: Path) -> None:
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    from vltool.data.specs import load_spec
    from vltool.eval.predictors import GenerationSettings, load_predictor

    merged = tmp_path / "merged"
    invoke(["merge", str(vpg), "--out", str(merged)])
    assert json.loads((merged / "manifest.json").read_text())["kind"] == "model"
    hf = Blip2ForConditionalGeneration.from_pretrained(merged).eval()
    processor = Blip2Processor.from_pretrained(merged)
    ours = load_predictor(str(vpg))
    samples = load_spec("demo:caption", "val")[:4]
    from PIL import Image

    images = [Image.open(s.image).convert("RGB") for s in samples]
    inputs = processor(images=images, text=["a"] * 4, return_tensors="pt")
    with torch.no_grad():
        theirs = hf(**inputs).logits
        mine = ours.blip2(**inputs).logits
    assert (theirs - mine).abs().max().item() <= 1e-5
    settings = GenerationSettings(max_new_tokens=6)
    assert load_predictor(str(merged)).generate(samples, settings) == ours.generate(samples, settings)
    again = runner.invoke(app, ["merge", str(merged), "--out", str(tmp_path / "m2")])
    assert again.exit_code == 0 and not (tmp_path / "m2").exists()  # already merged: nothing to do


def test_eval_writes_metrics_and_predictions_that_score_again(vpg: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    invoke(["eval", str(vpg), "demo-llama", "--data", "demo:sqa", "--data", "demo:text", "--max-samples", "12",
            "--out", str(out)])
    report = json.loads(out.read_text())
    sqa = report["metrics"]["demo:sqa"][str(vpg)]
    assert {"accuracy", "unparsed"} <= sqa.keys() and 0 <= sqa["accuracy"] <= 100
    assert report["metrics"]["demo:sqa"]["demo-llama"] == {}  # text-only model skipped on image data
    text_preds = out.with_name("eval.vpg.demo_text.jsonl")
    rows = [json.loads(x) for x in text_preds.read_text().splitlines()]
    assert len(rows) == 12 and {"id", "prediction", "nll", "tokens"} == rows[0].keys()
    text = report["metrics"]["demo:text"][str(vpg)]
    nll, tokens = sum(r["nll"] for r in rows), sum(r["tokens"] for r in rows)
    assert tokens >= 24 and text["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-9)
    assert math.isfinite(text["perplexity"]) and text["perplexity"] > 1.0
    rescored_out = tmp_path / "rescored.json"
    invoke(["eval", "--predictions", str(text_preds), "--data", "demo:text", "--max-samples", "12",
            "--out", str(rescored_out)])
    assert json.loads(rescored_out.read_text())["metrics"]["demo:text"][text_preds.name] == pytest.approx(text)


def test_predictions_file_errors_name_lines_and_ids(quick_world: Path, tmp_path: Path) -> None:
    from vltool.data.specs import load_spec

    ids = [s.id for s in load_spec("demo:text", "test")[:3]]
    bad = tmp_path / "p.jsonl"
    bad.write_text(json.dumps({"id": ids[0], "prediction": "x"}) + "\n\n{oops\n")
    with pytest.raises(UserError, match="line 3 is not valid JSON"):
        invoke(["eval", "--predictions", str(bad), "--data", "demo:text", "--max-samples", "3"])
    bad.write_text("".join(json.dumps({"id": i, "prediction": "x"}) + "\n" for i in [ids[0], "nope"]))
    with pytest.raises(UserError, match=r"2 dataset ids have no prediction .*1 predictions have ids not in"):
        invoke(["eval", "--predictions", str(bad), "--data", "demo:text", "--max-samples", "3"])


def test_metrics_worked_by_hand() -> None:
    from vltool.data.sample import Sample
    from vltool.eval.scienceqa_metric import scienceqa_scores
    from vltool.eval.text_metric import exact_match

    def q(answer: int, hint: bool, image: bool) -> Sample:
        return Sample("q", "x.png" if image else None, "", "", [],
                      {"choices": ["a", "b", "c"], "answer_index": answer, "has_hint": hint, "has_image": image})

    samples = [q(0, True, False), q(1, False, True), q(2, True, True), q(0, False, False)]
    preds = ["The answer is A.", "The answer is C.", "The answer is C. BECAUSE: ...", "The answer is D."]
    scores = scienceqa_scores(preds, samples)
    # right: 1st and 3rd; the 4th names an out-of-range letter -> wrong and unparsed
    assert scores["accuracy"] == 50.0 and scores["unparsed"] == 1.0
    assert scores["TXT"] == 100.0 and scores["IMG"] == 50.0 and scores["NO"] == 0.0
    assert exact_match(["The Red circle.", "blue"], [["red circle"], ["green"]]) == 50.0


@pytest.mark.dist
def test_eval_under_two_processes_matches_one(quick_world: Path, tmp_path: Path) -> None:
    """accelerate launch shards the samples and gathers them back: same predictions, same scores."""
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    args = ["demo-llama", "--data", "demo:text", "--max-samples", "7", "--max-new-tokens", "6"]
    invoke(["eval", *args, "--out", str(one)])
    ok(vltool(["eval", *args, "--out", str(two)], processes=2, timeout=300))
    first, second = json.loads(one.read_text()), json.loads(two.read_text())
    assert second["processes"] == 2 and first["processes"] == 1
    assert second["metrics"] == first["metrics"]
    assert (tmp_path / "two.demo-llama.demo_text.jsonl").read_text() == \
        (tmp_path / "one.demo-llama.demo_text.jsonl").read_text()
