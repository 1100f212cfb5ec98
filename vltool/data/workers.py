"""How many processes decode images: one rule for training, eval, predict and the demo build."""

from __future__ import annotations

import os


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask under SLURM / taskset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_workers() -> int:
    """``min(4, CPUs - 1)``: one core stays with the model; four decoders keep a GPU fed."""
    return max(0, min(4, cpu_count() - 1))
