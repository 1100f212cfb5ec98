"""VPGTrans stages end to end on the quick demo world, through the CLI as users chain them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support.run import invoke
from typer.testing import CliRunner

from vltool.cli import app
from vltool.errors import UserError

runner = CliRunner()
SMALL = ["data.max_train_samples=64", "data.max_val_samples=16", "train.batch_size=16", "eval.max_new_tokens=6"]




def source_tensors(home: Path) -> dict[str, torch.Tensor]:
    from vltool.demo.home import demo_model_paths

    return load_file(demo_model_paths(0, home)["demo-blip2-opt-s"] / "model.safetensors")


def test_warmup_then_transfer_from_warmup(quick_world: Path, tmp_path: Path) -> None:
    warm, vpg = tmp_path / "warm", tmp_path / "vpg"
    invoke(["warmup", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", "demo:caption",
            "--val-data", "demo:caption", "--out", str(warm), "warmup.max_steps=3", *SMALL])
    manifest = json.loads((warm / "manifest.json").read_text())
    assert manifest["kind"] == "vpg" and manifest["metrics"]["warmup_steps"] == 3
    assert manifest["metrics"]["converter_alignment"] == "words"  # OPT -> LLaMA tokenizers differ
    # the converter generalises to word pairs it was not fitted on: a random linear map scores
    # cos ~ 0 +- 1/sqrt(64 * pairs) there (0.22 measured in this world with 9 held-out pairs)
    assert manifest["metrics"]["converter_held_out_pairs"] >= 5
    assert 0.1 < manifest["metrics"]["converter_held_out_cos"] <= manifest["metrics"]["converter_split_train_cos"] + 0.05
    assert {"vision", "llm", "src"} <= manifest["inputs"].keys()
    assert manifest["recipe"]["warmup"]["lr_mult"] == 5.0
    tensors = load_file(warm / "vpg.safetensors")
    src = source_tensors(quick_world)
    # warm-up trains the projector only: the inherited Q-Former and queries are untouched
    assert torch.equal(tensors["qformer.encoder.layer.0.attention.attention.query.weight"],
                       src["qformer.encoder.layer.0.attention.attention.query.weight"])
    assert torch.equal(tensors["query_tokens"], src["query_tokens"])
    assert tensors["projector.weight"].shape == (96, 64)  # Q-Former width -> demo-llama width
    rows = [json.loads(x) for x in (warm / "metrics.jsonl").read_text().splitlines()]
    assert any("eval" in r and "attr_acc" in r["eval"] for r in rows)

    invoke(["transfer", "--from-warmup", str(warm), "--out", str(vpg), "train.max_steps=2", *SMALL])
    manifest = json.loads((vpg / "manifest.json").read_text())
    assert manifest["metrics"]["steps_total"] == 5 and manifest["metrics"]["finetune_steps"] == 2
    stage2 = load_file(vpg / "vpg.safetensors")
    assert not torch.equal(stage2["qformer.encoder.layer.0.attention.attention.query.weight"],
                           tensors["qformer.encoder.layer.0.attention.attention.query.weight"])
    rows = [json.loads(x) for x in (vpg / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 5 and rows[-1]["phase"] == "finetune"
    assert not (tmp_path / ".vpg.run").exists()

    # a vpg artifact is accepted back as a source for a further transfer (same-tokenizer target)
    again = tmp_path / "again"
    invoke(["transfer", "--src", str(vpg), "--dst", "demo-opt-l", "--data", "demo:caption", "--out", str(again),
            "warmup.max_steps=1", "train.max_steps=1", *SMALL])
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["metrics"]["converter_alignment"] == "words"  # its LLM is demo-llama: BPE -> word-level
    assert manifest["inputs"]["src"]["source"] == str(vpg)

    with pytest.raises(UserError, match="already exists; pass --force"):
        invoke(["transfer", "--from-warmup", str(warm), "--out", str(vpg), *SMALL])


def test_from_scratch_starts_from_the_stage1_qformer(quick_world: Path, tmp_path: Path) -> None:
    """The paper's TFS: stage-1 Q-Former + queries + ln_vision (demo-qformer-stage1), a random projector."""
    from vltool.demo.home import world_dir
    from vltool.sources.hf_blip2 import read_tensors

    common = ["--src", "demo-blip2-opt-s", "--dst", "demo-opt-l", "--data", "demo:caption"]
    with pytest.raises(UserError, match="from_scratch: true needs scratch_qformer"):
        invoke(["transfer", *common, "--from-scratch", "--out", str(tmp_path / "x"), "train.max_steps=1", *SMALL])
    with pytest.raises(UserError, match="add --from-scratch"):
        invoke(["transfer", *common, "--qformer", "random", "--out", str(tmp_path / "x"), *SMALL])
    out = tmp_path / "scratch"
    invoke(["transfer", *common, "--from-scratch", "--qformer", "demo-qformer-stage1", "--out", str(out),
            "train.max_steps=1", "train.lr=1e-9", *SMALL])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["from_scratch"] is True and "warmup_steps" not in manifest["metrics"]
    assert manifest["inputs"]["scratch_qformer"]["alias"] == "demo-qformer-stage1"
    trained = load_file(out / "vpg.safetensors")
    stage1 = read_tensors(world_dir(0, quick_world, "quick") / "models" / "demo-qformer-stage1", lambda k: True)
    for key in ("encoder.layer.0.attention.attention.query.weight", "encoder.layer.1.output_query.dense.bias"):
        assert torch.allclose(trained[f"qformer.{key}"], stage1[f"qformer.{key}"], atol=1e-5), key
    assert torch.allclose(trained["query_tokens"], stage1["query_tokens"], atol=1e-5)
    assert torch.allclose(trained["ln_vision.weight"], stage1["vision_model.post_layernorm.weight"], atol=1e-5)
    assert not any(".intermediate." in k for k in trained)  # the text FFN is not part of the VPG


def test_random_qformer_ablation_starts_a_fresh_qformer(quick_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "scratch"
    invoke(["transfer", "--src", "demo-blip2-opt-s", "--dst", "demo-opt-l", "--data", "demo:caption",
            "--from-scratch", "--qformer", "random", "--out", str(out), "train.max_steps=2", *SMALL])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["from_scratch"] is True and manifest["metrics"]["steps_total"] == 2
    assert "warmup_steps" not in manifest["metrics"] and "scratch_qformer" not in manifest["inputs"]
    fresh = load_file(out / "vpg.safetensors")["qformer.encoder.layer.0.attention.attention.query.weight"]
    inherited = source_tensors(quick_world)["qformer.encoder.layer.0.attention.attention.query.weight"]
    assert fresh.shape == inherited.shape and not torch.allclose(fresh, inherited, atol=1e-2)


def test_bad_images_are_counted_before_training(quick_world: Path, tmp_path: Path) -> None:
    from vltool.demo.datasets import read_demo
    from vltool.demo.home import demo_data_dir

    good = read_demo(demo_data_dir(0, quick_world), "caption", "train")[:40]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows = [{"image": s.image, "prompt": "", "answer": s.answer} for s in good]
    rows += [{"image": str(tmp_path / "missing.png"), "prompt": "", "answer": "x"},
             {"image": str(tmp_path / "broken.png"), "prompt": "", "answer": "y"}]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["warmup", "--src", "demo-blip2-opt-s", "--dst", "demo-opt-l", "--data", f"jsonl:{data}",
            "--out", str(tmp_path / "w"), "warmup.max_steps=1", "train.batch_size=8"]
    with pytest.raises(UserError, match=r"2 of 42 images cannot be read .*missing.png: missing"):
        invoke(args)
    # skipped bad images are met while training (no up-front pass), replaced and counted in the manifest;
    # 6 steps x 8 draw every image, so the feature cache is built and meets them first
    invoke([*args, "--skip-bad-images", "warmup.max_steps=6"])
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["metrics"]["data_bad_samples_skipped"] == 2
    invoke([*args, "--skip-bad-images", "warmup.max_steps=6", "--no-feature-cache", "--force"])
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["metrics"]["data_bad_samples_skipped"] == 2


def test_changed_llm_is_refused_by_fingerprint(quick_world: Path, tmp_path: Path) -> None:
    import shutil

    from vltool.demo.home import demo_model_paths

    llm = tmp_path / "my-llm"
    shutil.copytree(demo_model_paths(0, quick_world)["demo-opt-l"], llm)
    warm = tmp_path / "warm"
    invoke(["warmup", "--src", "demo-blip2-opt-s", "--dst", str(llm), "--data", "demo:caption",
            "--out", str(warm), "warmup.max_steps=1", *SMALL])
    config = json.loads((llm / "config.json").read_text())
    (llm / "config.json").write_text(json.dumps({**config, "dropout": 0.3}))
    with pytest.raises(UserError, match="has changed since"):
        invoke(["transfer", "--from-warmup", str(warm), "--out", str(tmp_path / "t"), *SMALL])


def test_unknown_alias_and_missing_real_model_say_what_to_do(quick_world: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError, match="hf download lmsys/vicuna-7b-v1.1"):
        invoke(["warmup", "--src", "demo-blip2-opt-s", "--dst", "vicuna7b", "--data", "demo:caption",
                "--out", str(tmp_path / "w")])
    with pytest.raises(UserError, match="known target alias"):
        invoke(["warmup", "--src", "demo-blip2-opt-s", "--dst", "vicuna-7", "--data", "demo:caption",
                "--out", str(tmp_path / "w")])


def test_dry_run_counts_real_scale_parts_offline() -> None:
    from vltool.config.loader import load_recipe
    from vltool.models.meta_count import vpgtrans_table

    table = vpgtrans_table(load_recipe(None, "transfer", ["src=opt2.7b", "dst=vicuna7b"]))
    counts = table["counts"]
    assert counts["LLM (frozen)"] == 6_738_415_616  # LLaMA-7B
    assert counts["query tokens"] == 32 * 768
    assert counts["projector"] == 768 * 4096 + 4096
    assert counts["ln_vision"] == 2 * 1408
    result = runner.invoke(app, ["transfer", "--src", "opt2.7b", "--dst", "vicuna7b", "--dry-run"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "6,738,415,616" in result.output
