"""The VPGTrans recipes spend the official run's compute on its data (issue #21): the warm-up's own
data, ``--from-warmup`` keeping the recipe's stage-2 mix, and the dry-run's cost table.

Fast: no model is trained; the stage is stopped where its data choice is made.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from support.run import invoke
from typer.testing import CliRunner

from vltool.artifacts import ArtifactWriter
from vltool.cli import app
from vltool.config.shipped import load_named_recipe
from vltool.stages import scaffold, vpgtrans, vpgtrans_setup
from vltool.stages import warm_artifact as warm_module

RECIPE = "vpgtrans/opt6.7b-to-vicuna7b"
STAGE2_MIX = ["coco:coco/annotations/coco_karpathy_train.json@0.1", "vg:vg/annotations/vg_caption.json@0.2",
              "wds:laion-coco/{00000..00999}.tar@0.7"]


class Stop(Exception):
    """Raised by the patched ``prepare``: the recipe the stage was about to train on is in ``args``."""


def warm_artifact(path: Path, recipe: dict) -> Path:
    with ArtifactWriter(path, "vpg") as writer:
        writer.manifest["recipe"] = recipe
        writer.manifest["metrics"] = {"steps_total": 3}
    return path


def stage2_recipe(monkeypatch: pytest.MonkeyPatch, args: list[str]):
    """The recipe ``vltool transfer ARGS`` hands to its stage-2 data loading."""
    def stop(cfg, reporter, init, warm=None, phases=("warmup", "finetune")):
        raise Stop(cfg, init, phases)

    monkeypatch.setattr(vpgtrans, "prepare", stop)
    monkeypatch.setattr(scaffold, "make_accelerator", lambda *args, **kwargs: None)
    result = CliRunner().invoke(app, ["transfer", *args], env={"COLUMNS": "200"})
    assert isinstance(result.exception, Stop), result.output
    cfg, init, phases = result.exception.args
    assert init == "warmup" and phases == ("finetune",)
    return cfg


def test_from_warmup_keeps_the_recipes_stage2_mix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    warm = warm_artifact(tmp_path / "warm", {
        "src": "opt6.7b", "dst": "vicuna7b", "prompt": "", "end_of_text": "\n",
        "data": {"train": ["coco:warm-only.json"], "val": ["coco:val.json"], "images": "/data/img"},
        "warmup": {"data": ["coco:c.json", "sbu:s.json"]}})
    cfg = stage2_recipe(monkeypatch, ["-r", RECIPE, "--from-warmup", str(warm), "--out", str(tmp_path / "vpg")])
    assert cfg.data.train == STAGE2_MIX  # the recipe's mix, not the warm-up's data
    assert cfg.data.val == ["coco:val.json"] and cfg.data.images == "/data/img"  # unset in the recipe: filled
    assert (cfg.src, cfg.dst, cfg.text_processor) == ("opt6.7b", "vicuna7b", "blip_caption")
    cfg = stage2_recipe(monkeypatch, ["-r", RECIPE, "--from-warmup", str(warm), "--data", "coco:mine.json",
                                      "--images", "/mine", "--out", str(tmp_path / "vpg2")])
    assert cfg.data.train == ["coco:mine.json"] and cfg.data.images == "/mine"  # flags win


def test_from_warmup_without_stage2_data_continues_on_the_warmups(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """No recipe and no --data: stage 2 falls back to the warm-up recipe's stage-2 data, else its warm-up data."""
    mixed = warm_artifact(tmp_path / "a", {"src": "s", "dst": "d", "data": {"train": ["coco:mix.json"]},
                                           "warmup": {"data": ["coco:w.json"]}})
    assert stage2_recipe(monkeypatch, ["--from-warmup", str(mixed), "--out", str(tmp_path / "o1")]).data.train == \
        ["coco:mix.json"]
    plain = warm_artifact(tmp_path / "b", {"src": "s", "dst": "d", "data": {"train": []},
                                           "warmup": {"data": ["demo:caption"]}})
    assert stage2_recipe(monkeypatch, ["--from-warmup", str(plain), "--out", str(tmp_path / "o2")]).data.train == \
        ["demo:caption"]


def test_warmup_data_flag_and_recipe_keep_stage2_data_apart(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = []
    monkeypatch.setattr(vpgtrans, "run_warmup", lambda cfg, out, **kw: seen.append(cfg) or out)
    monkeypatch.setattr("vltool.cli._show_artifact", lambda *args, **kwargs: None)
    invoke(["warmup", "-r", RECIPE, "--out", str(tmp_path / "w")])
    assert seen[-1].warmup.data == ["coco:coco/annotations/coco_karpathy_train.json",
                                    "sbu:sbu_captions/annotations/sbu.json"]
    invoke(["warmup", "-r", RECIPE, "--data", "coco:mine.json", "--out", str(tmp_path / "w")])
    assert seen[-1].warmup.data == ["coco:mine.json"] and seen[-1].data.train == STAGE2_MIX
    assert vpgtrans_setup.warmup_specs(seen[-1]) == ["coco:mine.json"]
    no_warm_data = load_named_recipe(None, "transfer", [], {"src": "s", "dst": "d", "data.train": ["coco:x.json"]})
    assert vpgtrans_setup.warmup_specs(no_warm_data) == ["coco:x.json"]  # without warmup.data: data.train


def test_shipped_vicuna_recipe_states_the_official_length() -> None:
    cfg = load_named_recipe(RECIPE, "transfer", [], {})
    # official: 50,000 micro-batch iterations x 36 per GPU x 8 GPUs, an optimizer step every 6 (1728)
    assert cfg.train.batch_size == 36 * 8 * 6 == 1728
    assert cfg.train.max_steps == 50_000 // 6 == 8333
    assert cfg.train.max_steps * cfg.train.batch_size == 14_399_424  # 14.4M samples, not 86.4M
    assert cfg.text_processor == "blip_caption" and cfg.warmup.epochs == 1


def test_dry_run_prints_the_cost_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(["transfer", "-r", RECIPE, "--dry-run"])
    cfg = load_named_recipe(RECIPE, "transfer", [], {})
    cost = vpgtrans.dry_run(cfg)["cost"]
    warm, stage2 = cost["stages"]
    # lengths by hand: floor(1 epoch x 1,400,000 / 1728) = 810 steps; 8333 steps; 129M / 1728 -> 74,653 steps
    assert (warm["steps"], warm["samples"]) == (810, 810 * 1728) == (810, 1_399_680)
    assert (stage2["steps"], stage2["samples"]) == (8333, 14_399_424)
    assert (cost["scratch"]["steps"], cost["scratch"]["samples"]) == (math.ceil(129e6 / 1728), 129_000_000) \
        == (74_653, 129_000_000)
    # stage-2 FLOPs of one sample by hand, on the shipped shapes (EVA ViT-g/14 at 224 px, BERT-base Q-Former with
    # cross-attention every 2nd layer and 32 queries, LLaMA-7B), BOS + 32 caption tokens + end: 34 text tokens
    vit = 2 * 256 * 3 * 14 * 14 * 1408 + 39 * (2 * 257 * (4 * 1408**2 + 2 * 1408 * 6144) + 4 * 257**2 * 1408)
    qf = 12 * (2 * 32 * 4 * 768**2 + 4 * 32 * 32 * 768 + 2 * 32 * 2 * 768 * 3072) \
        + 6 * (2 * 32 * 2 * 768**2 + 2 * 257 * 2 * 1408 * 768 + 4 * 32 * 257 * 768)
    proj = 2 * 32 * 768 * 4096
    s = 32 + 34
    linear, attn, head = 2 * s * (4 * 4096**2 + 3 * 4096 * 11008), 4 * s * s * 4096, 2 * 33 * 4096 * 32000
    llm_fwd, llm_bwd = 32 * (linear + attn) + head, 32 * (linear + 2 * attn) + head
    stage2_per_sample = vit + 3 * qf + 3 * proj + llm_fwd + llm_bwd  # Q-Former and projector: fwd + 2x in backward
    assert stage2["flops_per_sample"] == pytest.approx(stage2_per_sample, rel=1e-12)
    hours = 14_399_424 * stage2_per_sample / (312e12 * 0.40) / 3600
    assert stage2["gpu_hours"] == pytest.approx(hours, rel=1e-12) and 70 < hours < 80
    saving = 129e6 * stage2_per_sample / (warm["flops"] + stage2["flops"])
    lines = result.output.splitlines()

    def row(*cells: str) -> bool:  # one printed line holds these cells, in order (table or tab-separated)
        import re

        pattern = r"(^|[\s│])" + r"[\s│]+".join(re.escape(c) for c in cells) + r"($|[\s│])"
        return any(re.search(pattern, line) for line in lines)

    assert row("warm-up", "1,399,680", "810")
    assert row("stage 2", "14,399,424", "8,333", f"{stage2_per_sample:.3g}", f"{14_399_424 * stage2_per_sample:.3g}",
               f"{hours:.1f}")
    assert row("from scratch (paper's TFS)", "129,000,000", "74,653")
    assert row("saving vs from scratch", f"{saving:.1f}x")
    assert any("A100 at 40% MFU" in line for line in lines)


def test_training_captions_go_through_blip_caption(tmp_path: Path) -> None:
    """Caption lists and wds: streams alike: what the collator receives is LAVIS's processed text."""
    import io
    import tarfile

    from support.data_files import jpeg_bytes

    from vltool.data.caption_text import processor
    from vltool.data.mixture import MixedVLData, Source
    from vltool.data.sample import Sample
    from vltool.data.wds import shard_paths

    with tarfile.open(tmp_path / "000.tar", "w") as tar:
        for name, data in (("k0.jpg", jpeg_bytes(0)), ("k0.txt", b"A Dog: Running (fast)!")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    listed = Source("coco:x.json", 0.5, samples=[Sample("1", None, "", "Two cats; one sleeping.", [], {})], size=1)
    shards = shard_paths(str(tmp_path / "000.tar"))
    streamed = Source(f"wds:{tmp_path / '000.tar'}", 0.5, shards=shards, size=1)
    data = MixedVLData([listed, streamed], lambda image: image, caption_text=processor("blip_caption"))
    data.batch_sampler(micro=1, accum=1, world=1, rank=0, seed=0, total=1, start=0)
    assert data[(0, 0, 0)] == (-1, "", "two cats one sleeping")
    assert data[(1, 0, 1)][2] == "a dog running fast"
    raw = MixedVLData([listed], lambda image: image)
    assert raw[(0, 0, 0)][2] == "Two cats; one sleeping."  # text_processor: none keeps the text


def test_chain_script_warms_up_on_coco_sbu_and_keeps_the_stage2_mix(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """recipes/vpgtrans-then-merge.sh's training lines, run through the CLI with the stages recorded."""
    import shlex

    seen: dict[str, object] = {}
    monkeypatch.setattr(vpgtrans, "run_warmup", lambda cfg, out, **kw: seen.setdefault("warmup", cfg) and out)
    monkeypatch.setattr(vpgtrans, "run_transfer", lambda cfg, out, **kw: seen.setdefault("transfer", cfg) and out)
    monkeypatch.setattr(warm_module, "flags_from_warmup", lambda path: {"src": "opt6.7b", "dst": "vicuna7b"})
    monkeypatch.setattr("vltool.cli._show_artifact", lambda *args, **kwargs: None)
    script = (Path(__file__).parents[2] / "recipes" / "vpgtrans-then-merge.sh").read_text()
    joined = script.replace("\\\n", " ")
    env = {"recipe": RECIPE, "images": str(tmp_path / "img"), "out": str(tmp_path / "runs")}
    for line in joined.splitlines():
        words = shlex.split(line.split("#")[0])
        if words[:2] in (["vltool", "warmup"], ["vltool", "transfer"]) and "--dry-run" not in words:
            invoke([_expand(w, env) for w in words[1:]])
    assert seen["warmup"].warmup.data == ["coco:coco/annotations/coco_karpathy_train.json",
                                          "sbu:sbu_captions/annotations/sbu.json"]
    assert seen["transfer"].data.train == STAGE2_MIX


def _expand(word: str, env: dict[str, str]) -> str:
    for key, value in env.items():
        word = word.replace("${" + key + "}", value).replace("$" + key, value)
    return word


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_transfer_warms_up_on_warmup_data_and_tunes_on_data_train(quick_world: Path, tmp_path: Path) -> None:
    """A real run: the converter and the warm-up read warmup.data (two blip_caption'd COCO captions),
    stage 2 reads data.train; the manifest records both."""
    import json

    from PIL import Image

    from vltool.artifacts import read_artifact

    for image_id, colour in ((42, (250, 0, 0)), (7, (0, 250, 0))):
        Image.new("RGB", (48, 40), colour).save(tmp_path / f"COCO_val2014_{image_id:012d}.jpg")
    warm_file = tmp_path / "coco_karpathy_train.json"
    warm_file.write_text(json.dumps([
        {"image": "COCO_val2014_000000000042.jpg", "caption": "A RED square.", "image_id": "coco_42"},
        {"image": "COCO_val2014_000000000007.jpg", "caption": "A green (small) square!", "image_id": "coco_7"}]))
    vpg = tmp_path / "vpg"
    invoke(["transfer", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", "demo:caption",
            "--out", str(vpg), f"warmup.data=[coco:{warm_file}]", "text_processor=blip_caption",
            "warmup.max_steps=1", "train.max_steps=1", "train.batch_size=2", "data.max_train_samples=32",
            "converter.held_out=0"])
    manifest = read_artifact(vpg).manifest
    assert manifest["recipe"]["warmup"]["data"] == [f"coco:{warm_file}"]
    assert manifest["recipe"]["data"]["train"] == ["demo:caption"]
    # the converter saw only the warm-up's words: "a red square", "a green small square" (blip_caption'd)
    assert manifest["metrics"]["converter_candidates"] <= 5
    assert manifest["metrics"]["finetune_steps"] == 1 and manifest["metrics"]["steps_total"] == 2
