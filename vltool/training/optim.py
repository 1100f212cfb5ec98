"""AdamW parameter groups and LR schedules shared by every stage.

Weight decay is never applied to tensors with fewer than two dimensions: biases and norm gains
(LAVIS and LaVIN both exclude them; decaying a LayerNorm gain towards zero only hurts). Schedules are written as plain functions of the step so a resumed run computes exactly
the same LR as an uninterrupted one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vltool.training.settings import TrainSettings


def is_no_decay(param: torch.Tensor) -> bool:
    """Biases, norm gains and every other tensor with fewer than two dimensions are not decayed.

    Decided by the tensor, not its name: LaVIN's MM-Adapters live under wrapped norms
    (``...input_layernorm.adapter.down.weight``), and a name rule gave 3.1M of LaVIN-7B's 3.78M
    trainable parameters no decay instead of LaVIN's 0.02.
    """
    return param.ndim < 2


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split the trainable parameters into a decayed and a non-decayed group."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if is_no_decay(param) else decay).append(param)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters only (the frozen ones cost no optimizer state)."""
    groups = param_groups(model, settings.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters (every requires_grad is False)")
    return torch.optim.AdamW(groups, lr=settings.lr, betas=tuple(settings.betas))


def lr_factor(step: int, total_steps: int, settings: TrainSettings) -> float:
    """Multiplier on the peak LR at optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_steps``; then constant, or a half-cycle cosine from 1 down to
    ``min_lr_ratio`` at ``total_steps``.
    """
    if settings.warmup_steps and step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    if settings.schedule == "constant":
        return 1.0
    span = max(1, total_steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    floor = settings.min_lr_ratio
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, settings: TrainSettings
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, settings)
    )
