"""The processes of a run: which one this is, and whether the model's parameters are sharded.

Every command may run under ``accelerate launch`` (one process per device, or gloo processes on
CPU with ``ACCELERATE_USE_CPU=1``), so the questions "am I the main process?" and "are the
parameters split across processes (FSDP, DeepSpeed)?" are asked in many places; they are
answered here once.
"""

from __future__ import annotations

from typing import Any


def process_state() -> Any:
    """Accelerate's ``PartialState`` as ``Accelerator`` builds it: a CPU launch
    (``ACCELERATE_USE_CPU=1 accelerate launch ...``) runs gloo processes on the CPU."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def is_main_process() -> bool:
    """True in a plain run and in the first process of a launched one (print tables once)."""
    return process_state().is_main_process


def is_sharded(accelerator: Any) -> bool:
    """FSDP or DeepSpeed: parameters (or their optimizer states) live in per-process shards, every
    forward may gather them from all processes, and saving is Accelerate's own."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
