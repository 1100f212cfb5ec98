"""Whole tensors out of a trained model, whatever the distribution strategy.

Stages save what trained (and the parts of the VPG they ship) after ``train()`` returns. Plain and
DDP runs hold every tensor whole on every process. Under FSDP each process holds a shard of each
parameter (FSDP2: a DTensor), and under DeepSpeed ZeRO-3 a partition, so reading
``module.state_dict()`` on the main process alone would save shards or empty placeholders, and
gathering them is a collective: every process must take part. ``whole_tensors`` is called by
every process; the main one gets the tensors, whole, on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def whole_tensors(accelerator, model: nn.Module, keep: Callable[[str], bool]) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` entries whose names ``keep`` accepts, gathered whole (every process calls this)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        state = accelerator.get_state_dict(model)  # full state dict (FSDP1 / FSDP2), a collective
        return {k: v for k, v in state.items() if keep(k)}
    if kind == DistributedType.DEEPSPEED and _zero_stage(accelerator) == 3:
        import deepspeed

        wanted = [p for name, p in model.named_parameters() if keep(name)]
        with deepspeed.zero.GatheredParameters(wanted, modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if keep(k)}
    return {k: v for k, v in model.state_dict().items() if keep(k)}


def _zero_stage(accelerator) -> int:
    plugin = accelerator.state.deepspeed_plugin
    return int(plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0)) if plugin else 0
