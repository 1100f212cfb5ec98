"""The shared training loop: schedules, decay groups, resume, DDP, non-finite losses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support import loop_fixture
from support.loop_fixture import TinyNet, make_data, mse, settings
from support.run import launch, ok, python
from torch import nn

from vltool.training.loop import make_accelerator, plan_steps, train
from vltool.training.optim import lr_factor, param_groups
from vltool.training.sampler import StepBatchSampler
from vltool.training.settings import TrainSettings

FIXTURE = loop_fixture.__file__  # also a script: train, crash, resume in a fresh process


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cosine_schedule_with_warmup_hits_known_points() -> None:
    cfg = TrainSettings(lr=1.0, schedule="cosine", warmup_steps=4, min_lr_ratio=0.1, max_steps=14)
    assert lr_factor(0, 14, cfg) == pytest.approx(0.25)
    assert lr_factor(3, 14, cfg) == pytest.approx(1.0)
    assert lr_factor(4, 14, cfg) == pytest.approx(1.0)  # cosine starts at its peak
    assert lr_factor(9, 14, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down
    assert lr_factor(14, 14, cfg) == pytest.approx(0.1)
    const = TrainSettings(lr=1.0, schedule="constant", max_steps=3)
    assert [lr_factor(s, 3, const) for s in range(3)] == [1.0, 1.0, 1.0]


def test_no_weight_decay_on_bias_norm_and_1d() -> None:
    model = TinyNet()
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.hidden.weight), id(model.head.weight)}
    assert len(no_decay["params"]) == 4  # two biases and the LayerNorm's weight and bias
    assert all(id(p) != id(model.frozen.weight) for g in (decay, no_decay) for p in g["params"])


def test_effective_batch_is_split_into_micro_batches() -> None:
    cfg = TrainSettings(batch_size=32, micro_batch_size=4, epochs=2)
    assert plan_steps(cfg, 100, world=2) == (6, 4, 4)  # floor(2 * 100 / 32) steps, 32 = 4 x 4 x 2


def test_sampler_is_deterministic_disjoint_and_resumable() -> None:
    def batches(rank: int, start: int = 0) -> list[list[int]]:
        return list(StepBatchSampler(20, micro=2, accum=2, world=2, rank=rank, seed=3,
                                     total_steps=5, start_step=start))

    r0, r1 = batches(0), batches(1)
    assert len(r0) == 10  # 5 steps x 2 micro-batches
    for step in range(2):  # within an epoch (2 steps of 8 samples) no sample is seen twice
        seen = [x for pair in r0[2 * step:2 * step + 2] + r1[2 * step:2 * step + 2] for x in pair]
        assert len(set(seen)) == 8
    assert batches(0, start=3) == r0[6:]
    assert batches(0) == r0


def test_in_process_training_lowers_the_loss_and_logs_metrics(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    frozen_before = model.frozen.weight.clone()
    evals = []
    result = train(
        model, mse, make_data(), settings(60, eval_every=20), run_dir=tmp_path,
        eval_fn=lambda m, step: evals.append(step) or {"val_mse": 0.5},
        accelerator=make_accelerator("no", cpu=True),
    )
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert result.steps == 60 and result.stopped == "completed"
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:5]) / 5
    assert evals == [20, 40, 60]
    assert {"step", "loss", "lr", "samples_per_s"} <= rows[0].keys()
    assert torch.equal(result.model.frozen.weight, frozen_before)


def test_nonfinite_loss_stops_cleanly_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    calls = {"n": 0}

    def exploding(model: nn.Module, batch) -> torch.Tensor:
        calls["n"] += 1
        loss = mse(model, batch)
        return loss * float("nan") if calls["n"] > 4 * 5 else loss  # 4 micro-batches a step

    result = train(TinyNet(), exploding, make_data(), settings(10, save_every=2), run_dir=tmp_path,
                   accelerator=make_accelerator("no", cpu=True))
    assert result.stopped == "non-finite loss at step 6"
    assert result.steps == 5
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step_000002", "step_000004"]


def test_nonfinite_loss_can_be_skipped(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(model: nn.Module, batch) -> torch.Tensor:
        calls["n"] += 1
        loss = mse(model, batch)
        return loss * float("inf") if calls["n"] in (5, 6) else loss

    result = train(TinyNet(), flaky, make_data(), settings(6, on_nonfinite="skip"),
                   accelerator=make_accelerator("no", cpu=True))
    assert result.stopped == "completed" and result.skipped_nonfinite == 1


def test_killed_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    ok(python(FIXTURE, [straight, "12"]))
    killed = python(FIXTURE, [crashed, "12", "--crash-at", "7"])
    assert killed.returncode == 17 and not (crashed / "final.safetensors").exists()
    ok(python(FIXTURE, [crashed, "12", "--resume"]))
    assert _same(load_file(straight / "final.safetensors"), load_file(crashed / "final.safetensors"))
    losses = lambda d: [json.loads(x).get("loss") for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [x for x in losses(crashed) if x is not None] == losses(straight)


@pytest.mark.dist
def test_two_cpu_processes_end_with_identical_weights(tmp_path: Path) -> None:
    launch(FIXTURE, [tmp_path, "8"])
    rank0 = load_file(tmp_path / "final_rank0.safetensors")
    rank1 = load_file(tmp_path / "final_rank1.safetensors")
    assert _same(rank0, rank1)
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lrs) == 8 and lrs[-1] == 0.0 and lrs[-2] > 0  # the scheduler steps once per step
