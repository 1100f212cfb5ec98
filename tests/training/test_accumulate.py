"""Accelerate's own gradient accumulation in the loop, and which precision and launcher a run takes."""

from __future__ import annotations

import pytest
import torch
from support.loop_fixture import TinyNet, make_data, mse, settings, trainable_state

from vltool.errors import UserError
from vltool.training.loop import make_accelerator, resolve_precision, train


def _one_step(micro: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyNet()
    model.drop.p = 0.0  # no dropout: the two batchings see the same function
    cfg = settings(1).model_copy(update={"micro_batch_size": micro, "max_grad_norm": None, "warmup_steps": 0,
                                         "schedule": "constant"})
    result = train(model, mse, make_data(), cfg, accelerator=make_accelerator("no", cpu=True))
    return trainable_state(result.model)


def test_accumulated_micro_batches_equal_one_batch() -> None:
    """4 micro-batches of 4 through accelerator.accumulate() == 1 batch of 16 (same samples, same step)."""
    accumulated, whole = _one_step(4), _one_step(16)
    for name, value in whole.items():
        torch.testing.assert_close(accumulated[name], value, rtol=1e-5, atol=1e-6)


def test_recipe_precision_wins_and_auto_yields_to_accelerate_config() -> None:
    assert resolve_precision("no", True, "bf16") == "no"
    assert resolve_precision("bf16", False, None) == "bf16"
    assert resolve_precision("auto", False, "bf16") == "bf16"  # accelerate config: bf16
    assert resolve_precision("auto", True, "fp16") == "fp16"
    assert resolve_precision("auto", True, "no") == "bf16"  # the launcher's default is not a choice
    assert resolve_precision("auto", True, None) == "bf16"
    assert resolve_precision("auto", False, None) == "no"


@pytest.mark.parametrize("env", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_sharded_config_on_cpu_is_refused_not_silently_ddp(monkeypatch, env) -> None:
    monkeypatch.setenv(env, "true")
    with pytest.raises(UserError, match="only on GPUs"):
        make_accelerator("no", cpu=True)
