"""Checkpoints of a run: Accelerate's ``save_state`` plus the loop's own small state.

Layout: ``RUN/checkpoints/step_000120/`` holding what ``Accelerator.save_state`` writes
(trainable weights, optimizer, scheduler, every process's RNG states) and ``trainer_state.json``
(step, metric history). A checkpoint is written to ``.tmp-step_...`` and renamed when complete,
so a crash mid-save never leaves a checkpoint that looks valid.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.json"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (has trainer_state.json), or None."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def save_checkpoint(accelerator: Any, run_dir: Path, step: int, state: dict, keep: int) -> Path:
    """Save on every process (RNG states are per process); rename and prune on the main one."""
    root = checkpoint_dir(run_dir)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp-step_{step:06d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        older = sorted(p for p in root.glob("step_*") if p != final)
        for stale in older[: max(0, len(older) - (keep - 1))]:
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: Path) -> dict:
    """Restore weights, optimizer, scheduler and RNG states; return the loop's own state."""
    accelerator.load_state(str(path), strict=False)
    return json.loads((path / STATE_FILE).read_text())
