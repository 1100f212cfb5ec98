"""Stages under ``accelerate launch`` with 2 CPU processes (DDP over gloo), as a multi-GPU user runs them.

Each two-process run must train what one process trains when it accumulates the same two
micro-batches a step (``train.micro_batch_size=4`` of ``train.batch_size=8``): the processes'
gradients are averaged exactly as accumulation averages the micro-batches'.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support.run import vltool

WARMUP = ["warmup", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", "demo:caption",
          "warmup.max_steps=6", "data.max_train_samples=16", "train.batch_size=8", "train.log_every=2",
          "train.num_workers=0"]

MMA = ["tune-mma", "--data", "demo:sqa", "--data", "demo:text", "train.max_steps=4", "train.batch_size=8",
       "train.micro_batch_size=4", "data.max_train_samples=32", "adapter.dropout=0", "train.num_workers=0"]


@pytest.mark.dist
def test_warmup_and_tune_mma_on_two_processes_train_what_one_process_trains(quick_world: Path,
                                                                                 tmp_path: Path) -> None:
    """16 samples over 6 steps of 8: images repeat, so the warm-up trains from cached Q-Former outputs.
    Two processes (4 samples each a step) must give the one-process result: the projector's gradient
    is all-reduced although it runs outside BLIP-2's own forward."""
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        # One process: the step's 8 samples as 2 accumulated micro-batches of 4, the micro-batches
        # the two processes get; each is a mean over its own caption tokens, and both runs average them.
        result = vltool([*WARMUP, "train.micro_batch_size=4", "--out", str(out)], home=quick_world, processes=processes)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "feature cache" in result.stdout + result.stderr
        runs[processes] = load_file(out / "vpg.safetensors")
    one, two = runs[1], runs[2]
    projector = [k for k in one if k.startswith("projector.")]
    assert projector and one.keys() == two.keys()
    for key in projector:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6)

    # tune-mma on mixed image / text-only data: a micro-batch without images leaves the front end
    # unused on that process (DDP's collectives stopped matching: gloo aborted the run).
    adapters = {}
    for processes in (1, 2):
        out = tmp_path / f"mma{processes}"
        result = vltool([*MMA, "--model", str(tmp_path / "p1"), "--out", str(out)], home=quick_world, processes=processes)
        assert result.returncode == 0, result.stderr[-3000:]
        adapters[processes] = load_file(out / "adapters.safetensors")
    assert adapters[1].keys() == adapters[2].keys()
    for key, value in adapters[1].items():
        torch.testing.assert_close(adapters[2][key], value, rtol=1e-4, atol=1e-6)
