"""Recipe validation: every shipped recipe passes; errors name file, key and a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from vltool.config.loader import load_recipe, parse_override, read_yaml, validate_recipe
from vltool.config.shipped import find_recipe, list_recipes
from vltool.errors import UserError


def test_every_shipped_recipe_validates() -> None:
    recipes = list_recipes()
    assert len(recipes) >= 6
    for name, path in recipes:
        cfg = validate_recipe(read_yaml(path), str(path))
        assert cfg.stage in ("warmup", "transfer", "tune-mma", "eval"), name
        if cfg.stage != "eval" and not name.startswith("demo/"):
            # a multi-day real-scale run must be resumable
            assert cfg.train.save_every > 0, f"{name} writes no checkpoint"


def test_all_errors_reported_at_once_with_file_key_and_suggestion(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: transfer\nsrc: a\ndst: b\ntrain:\n  lrr: 1.0\n  batch_size: zero\nwarmup:\n  lr_mul: 5\n")
    with pytest.raises(UserError) as err:
        load_recipe(bad, "transfer")
    lines = str(err.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{bad}: ") for line in lines)
    joined = "\n".join(lines)
    assert "unknown key 'train.lrr'; did you mean 'lr'?" in joined
    assert "unknown key 'warmup.lr_mul'; did you mean 'lr_mult'?" in joined
    assert "'train.batch_size' = 'zero'" in joined


def test_overrides_and_flags_win_and_keep_stage_defaults(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("stage: transfer\nsrc: a\ndst: b\ntrain:\n  lr: 0.001\n  max_steps: 10\n")
    cfg = load_recipe(path, "transfer", ["train.lr=3e-4", "warmup.feature_cache=false"], {"dst": "c"})
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.train.weight_decay == 0.05  # the transfer stage's default survives a partial section
    assert cfg.warmup.feature_cache is False and cfg.dst == "c" and cfg.train.max_steps == 10
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(UserError, match="must look like key=value"):
        parse_override("train.lr")


def test_errors_from_overrides_name_the_override_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("stage: transfer\nsrc: a\ndst: b\ntrain:\n  lrr: 1.0\n")
    with pytest.raises(UserError) as err:
        load_recipe(path, "transfer", ["trian.lr=1e-3", "train.max_steps=abc"])
    lines = sorted(str(err.value).splitlines())
    assert len(lines) == 3
    assert lines[0] == f"{path}: unknown key 'train.lrr'; did you mean 'lr'?"
    assert lines[1].startswith("override 'train.max_steps=abc': 'train.max_steps' = 'abc'")
    assert lines[2] == "override 'trian.lr=1e-3': unknown key 'trian'; did you mean 'train'?"


def test_wrong_stage_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("stage: tune-mma\nmodel: x\n")
    with pytest.raises(UserError, match="is a 'tune-mma' recipe; this command needs a 'transfer' recipe"):
        load_recipe(path, "transfer")
    path.write_text("stage: [unclosed\n")
    with pytest.raises(UserError, match=r"r.yaml line \d+ is not valid YAML"):
        load_recipe(path, "transfer")
    with pytest.raises(UserError, match="did you mean 'demo/transfer-opt-s-to-llama'"):
        find_recipe("demo/transfer-opt-s-to-lama")


def test_cross_field_rules_are_refused_by_validate_all_at_once(tmp_path: Path) -> None:
    """What a stage would refuse after loading models, `recipes validate` refuses first."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage: transfer\nsrc: opt2.7b\ndst: opt6.7b\nfrom_scratch: true\n"
                      "train: {eval_every: 5}\n")
    with pytest.raises(UserError) as err:
        load_recipe(recipe, "transfer")
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{recipe}: ") for line in lines)
    assert "train.eval_every is not a recipe key" in lines[0] and "set eval.every" in lines[0]
    assert "from_scratch: true needs scratch_qformer" in lines[1]
    # the feature cache cannot hold augmented draws, but only a run that warms up uses it
    augmented = ["data.augment=blip2"]
    with pytest.raises(UserError, match="warm-up feature cache stores one output per image"):
        load_recipe(None, "warmup", [*augmented, "src=a", "dst=b"])
    assert load_recipe(None, "warmup", [*augmented, "warmup.feature_cache=false", "src=a", "dst=b"])
    assert load_recipe(None, "transfer", [*augmented, "from_scratch=true", "scratch_qformer=random",
                                          "src=a", "dst=b"]).from_scratch
    with pytest.raises(UserError, match="train.eval_every is not a recipe key"):
        load_recipe(None, "tune-mma", ["model=m", "train.eval_every=3"])
    assert load_recipe(None, "tune-mma", ["model=m", "eval.every=3"]).eval.every == 3
