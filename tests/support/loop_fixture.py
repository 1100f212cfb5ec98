"""A tiny regression problem and a script entry point, shared by the loop tests.

Run as a script (``python tests/support/loop_fixture.py RUN_DIR STEPS [--resume] [--crash-at N]``) it
trains the tiny model and writes the final trainable weights to RUN_DIR/final.safetensors, so
the tests can launch it in-process, under torchrun / accelerate with 2 processes, or kill it
half-way and resume.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset

from vltool.training.gather import whole_tensors
from vltool.training.loop import make_accelerator, train
from vltool.training.settings import TrainSettings


class TinyNet(nn.Module):
    """Linear -> dropout -> LayerNorm -> Linear, with a frozen embedding-like part."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.hidden = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.2)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.drop(torch.tanh(self.hidden(self.frozen(x))))))


def make_data(n: int = 96) -> TensorDataset:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, :1] * 2 - x[:, 1:2]).sin()
    return TensorDataset(x, y)


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def settings(steps: int, save_every: int = 0, **extra) -> TrainSettings:
    return TrainSettings(
        lr=3e-2, schedule="cosine", warmup_steps=2, max_steps=steps, batch_size=16,
        micro_batch_size=4, weight_decay=0.05, max_grad_norm=1.0, precision="no", seed=7,
        save_every=save_every, log_every=1, **extra,
    )


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.named_parameters() if v.requires_grad}


class CrashAt:
    """Eval hook that kills the process at a given step, as a crash would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, model: nn.Module, step: int) -> dict[str, float]:
        if step >= self.step:
            os._exit(17)
        return {}


def main(argv: list[str]) -> None:
    run_dir, steps = Path(argv[0]), int(argv[1])
    resume = "--resume" in argv
    crash = int(argv[argv.index("--crash-at") + 1]) if "--crash-at" in argv else None
    torch.manual_seed(0)
    model = TinyNet()
    # VLTOOL_FIXTURE_GPU=1: on the GPUs (bench/gpu_distributed_check.sh runs FSDP / ZeRO configs there).
    accelerator = make_accelerator("no", cpu=os.environ.get("VLTOOL_FIXTURE_GPU") != "1")
    cfg = settings(steps, save_every=2, eval_every=1 if crash else 0)
    result = train(model, mse, make_data(), cfg, run_dir=run_dir, resume=resume,
                   eval_fn=CrashAt(crash) if crash else None, accelerator=accelerator)
    # vltool's own gathering (whole tensors under FSDP / ZeRO-3), as the stages save their artifacts.
    names = {k for k, v in result.model.named_parameters() if v.requires_grad}
    state = {k: v.detach().float().clone().contiguous()
             for k, v in whole_tensors(accelerator, result.model, names.__contains__).items()}
    if accelerator.is_main_process:
        save_file(state, str(run_dir / "final.safetensors"))
    rank = accelerator.process_index
    save_file(state, str(run_dir / f"final_rank{rank}.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1:])
