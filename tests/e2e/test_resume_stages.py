"""Stages killed and resumed as users do it: real ``vltool`` subprocesses, SIGKILL and Ctrl-C.

Each run is stopped at exact optimizer steps by ``VLTOOL_FAULT_AFTER_STEP`` (vltool.training.
faults), sometimes twice, then continued with ``--resume``; the final tensors and the logged
loss / eval curve must equal an uninterrupted run's exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from support.run import ok, vltool

SMALL = ["data.max_train_samples=48", "data.max_val_samples=8", "train.batch_size=8", "eval.max_new_tokens=4",
         "eval.every=4", "train.save_every=5", "train.log_every=3", "train.keep_checkpoints=2"]
TRANSFER = ["transfer", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", "demo:caption",
            "--val-data", "demo:caption", "warmup.max_steps=10", "train.max_steps=12", *SMALL]


def curve(artifact: Path) -> list[dict]:
    """The logged rows without wall-clock fields."""
    rows = [json.loads(x) for x in (artifact / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in rows]


def assert_same_artifact(a: Path, b: Path, weights: str) -> None:
    ta, tb = load_file(a / weights), load_file(b / weights)
    assert ta.keys() == tb.keys()
    worst = max(float((ta[k].float() - tb[k].float()).abs().max()) for k in ta)
    assert worst == 0.0, f"max abs diff {worst}"
    assert curve(a) == curve(b)


def interrupted_equals_straight(home: Path, args: list[str], tmp: Path, faults: list[str], weights: str) -> Path:
    """Run ``args`` straight, and again stopped by each fault in turn (resuming after the first),
    then resumed to the end; the two artifacts must be identical. Returns the resumed one."""
    straight, broken = tmp / "straight", tmp / "broken"
    ok(vltool(home=home, args=[*args, "--out", str(straight)]))
    for i, fault in enumerate(faults):
        stopped = vltool(home=home, args=[*args, "--out", str(broken), *(["--resume"] if i else [])], fault=fault)
        assert stopped.returncode == {"KILL": -9, "INT": 130}[fault.rsplit(":", 1)[1]], stopped.stderr[-2000:]
    ok(vltool(home=home, args=[*args, "--out", str(broken), "--resume"]))
    assert_same_artifact(straight, broken, weights)
    return broken


def test_transfer_in_one_process_resumes_exactly_after_kill_and_ctrl_c(quick_world: Path, tmp_path: Path) -> None:
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    ok(vltool(home=quick_world, args=[*TRANSFER, "--out", str(straight)]))

    # SIGKILL inside the warm-up, between checkpoints
    first = vltool(home=quick_world, args=[*TRANSFER, "--out", str(broken)], fault="warmup:7:KILL")
    assert first.returncode == -9 and not broken.exists()
    # resumed, then killed again inside fine-tuning (after warm-up finished and checkpointed)
    second = vltool(home=quick_world, args=[*TRANSFER, "--out", str(broken), "--resume"], fault="finetune:6:KILL")
    assert second.returncode == -9
    # resumed, then Ctrl-C (SIGINT) inside fine-tuning: one line saying how to resume, exit 130
    third = vltool(home=quick_world, args=[*TRANSFER, "--out", str(broken), "--resume"], fault="finetune:11:INT")
    assert third.returncode == 130, third.stderr[-2000:]
    assert "--resume" in third.stderr and "step_000010" in third.stderr and "Traceback" not in third.stderr
    ok(vltool(home=quick_world, args=[*TRANSFER, "--out", str(broken), "--resume"]))

    assert_same_artifact(straight, broken, "vpg.safetensors")
    assert len(load_file(broken / "vpg.safetensors")) > 50  # Q-Former, queries, ln_vision, projector
    assert not (tmp_path / ".broken.run").exists()


def test_resume_rules_protect_long_runs(quick_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    nothing = vltool(home=quick_world, args=[*TRANSFER, "--out", str(out), "--resume"])
    assert nothing.returncode == 2 and "nothing to resume" in nothing.stderr and ".run.run" in nothing.stderr

    assert vltool(home=quick_world, args=[*TRANSFER, "--out", str(out)], fault="finetune:5:KILL").returncode == -9
    again = vltool(home=quick_world, args=[*TRANSFER, "--out", str(out)])
    assert again.returncode == 2 and "--resume" in again.stderr and "--force" in again.stderr
    assert (tmp_path / ".run.run" / "finetune" / "checkpoints" / "step_000005").is_dir()  # nothing deleted

    diverged = vltool(home=quick_world, args=[*TRANSFER, "--out", str(out), "--force", "train.lr=1e30",
                                    "warmup.lr_mult=1"])
    assert diverged.returncode == 3, diverged.stderr[-2000:]
    assert "non-finite loss" in diverged.stderr and "Traceback" not in diverged.stderr


@pytest.mark.slow
def test_warmup_and_from_warmup_resume_exactly(quick_world: Path, tmp_path: Path) -> None:
    warm_args = ["warmup", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", "demo:caption",
                 "--val-data", "demo:caption", "warmup.max_steps=10", *SMALL]
    warm = interrupted_equals_straight(quick_world, warm_args, tmp_path / "warm", ["warmup:5:KILL"], "vpg.safetensors")

    cont = ["transfer", "--from-warmup", str(warm), "train.max_steps=12", *SMALL]
    interrupted_equals_straight(quick_world, cont, tmp_path / "cont", ["finetune:7:KILL", "finetune:9:INT"],
                                "vpg.safetensors")
    other = vltool(home=quick_world, args=[*cont, "--dst", "demo-opt-l", "--out", str(tmp_path / "other")])
    assert other.returncode == 2
    assert "--dst demo-opt-l" in other.stderr and "demo-llama" in other.stderr


@pytest.mark.slow
@pytest.mark.parametrize("front_end", ["qformer", "clip"])
def test_tune_mma_resumes_exactly(quick_world: Path, tmp_path: Path, front_end: str) -> None:
    if front_end == "qformer":
        vpg = tmp_path / "vpg"
        ok(vltool(home=quick_world, args=[*TRANSFER, "--out", str(vpg), "warmup.max_steps=2", "train.max_steps=2"]))
        base = ["--model", str(vpg)]
    else:
        from support.tiny_models import tiny_clip
        from transformers import CLIPImageProcessor

        clip = tmp_path / "clip"
        tiny_clip(4).save_pretrained(str(clip))
        CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(str(clip))
        base = ["--model", "demo-llama", "--front-end", "clip", "--vision", str(clip), "visual_tokens=2",
                "adapter.vision=true"]
    args = ["tune-mma", *base, "--data", "demo:sqa", "--data", "demo:text", "--val-data", "demo:sqa",
            "train.max_steps=14", *SMALL]
    interrupted_equals_straight(quick_world, args, tmp_path, ["tune-mma:7:KILL", "tune-mma:12:INT"],
                                "adapters.safetensors")
