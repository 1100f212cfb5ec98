"""One name per concept: both-sided switches, eval shaped like the other stages, old spellings noted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vltool.cli import _split_overrides, app
from vltool.config.loader import load_recipe
from vltool.errors import UserError

runner = CliRunner()


def captured_stage(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> dict:
    """Replace a stage function by one that records the recipe it was called with."""
    import importlib

    seen: dict = {}
    monkeypatch.setattr(importlib.import_module(module), name, lambda cfg, *a, **k: seen.setdefault("cfg", cfg))
    monkeypatch.setattr("vltool.cli._show_artifact", lambda path, *a, **k: None)
    return seen


def test_a_flag_can_undo_what_the_recipe_turns_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage: warmup\nsrc: a\ndst: b\ndata: {train: [demo:caption], skip_bad_images: true}\n"
                      "converter: {enabled: false}\nwarmup: {feature_cache: false}\n")
    seen = captured_stage(monkeypatch, "vltool.stages.vpgtrans", "run_warmup")
    result = runner.invoke(app, ["warmup", "-r", str(recipe), "--converter", "--feature-cache",
                                 "--no-skip-bad-images", "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert cfg.converter.enabled and cfg.warmup.feature_cache and not cfg.data.skip_bad_images
    seen.clear()
    assert runner.invoke(app, ["warmup", "-r", str(recipe), "--out", str(tmp_path / "w")]).exit_code == 0
    assert not seen["cfg"].converter.enabled and seen["cfg"].data.skip_bad_images  # the recipe stands


def test_eval_recipe_has_a_data_section_and_the_old_shape_still_reads(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    new = tmp_path / "new.yaml"
    new.write_text("stage: eval\ndata: {eval: [demo:sqa], split: val, images: imgs, skip_bad_images: true}\n")
    cfg = load_recipe(new, "eval")
    assert (cfg.data.eval, cfg.data.split, cfg.data.images, cfg.data.skip_bad_images) == (["demo:sqa"], "val", "imgs",
                                                                                           True)
    assert "deprecated" not in capsys.readouterr().err
    old = tmp_path / "old.yaml"
    old.write_text("stage: eval\ndata: [demo:sqa, demo:text]\nsplit: val\nimages: imgs\n")
    cfg = load_recipe(old, "eval")
    assert (cfg.data.eval, cfg.data.split, cfg.data.images) == (["demo:sqa", "demo:text"], "val", "imgs")
    assert "note:" in capsys.readouterr().err


def test_eval_takes_overrides_after_its_models(tmp_path: Path) -> None:
    assert _split_overrides(["runs/vpg", "eval.num_beams=5", "opt2.7b"]) == (["runs/vpg", "opt2.7b"],
                                                                             ["eval.num_beams=5"])
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "prompt": "q", "answer": "a"}) + "\n" for i in range(3)))
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": str(i), "prediction": "a"}) + "\n" for i in range(2)))
    args = ["eval", "--predictions", str(preds), "--data", f"jsonl:{data}"]
    missing = runner.invoke(app, args)
    # three samples, two predictions: refused as bad input (exit 2 from main), naming the gap
    assert isinstance(missing.exception, UserError), missing.exception
    assert "1 dataset ids have no prediction (e.g. 2)" in str(missing.exception)
    result = runner.invoke(app, [*args[:1], "eval.max_samples=2", *args[1:]], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "exact_match" in result.output
