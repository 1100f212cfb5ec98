"""Checkpoints of a run: Accelerate's ``save_state`` plus the loop's own small state.

Layout: ``RUN/checkpoints/step_000120/`` holding what ``Accelerator.save_state`` writes
(trainable weights only, optimizer, scheduler, every process's RNG states) and
``trainer_state.json`` (step, metric history, the loss rows not yet logged, whether the run had
finished). A checkpoint is written to ``.tmp-step_...`` and renamed when complete, so a crash
mid-save never leaves a checkpoint that looks valid.

Weights are saved and loaded by two hooks that ``train()`` registers on its Accelerator and
removes when it returns, so two trainings in one process (warm-up, then fine-tuning) never see
each other's hooks. Loading is strict: the checkpoint must hold exactly the tensors that train
in this run, or the resume is refused (a checkpoint of another phase or another model would
otherwise load partially and silently restart the rest).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from vltool.artifacts.disk_space import guard, size_of
from vltool.errors import UserError
from vltool.training.processes import process_state

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
    previous = latest_checkpoint(run_dir)
    kept = (f"the last complete checkpoint {previous} is kept: free space and rerun the same command with --resume"
            if previous is not None else "no complete checkpoint yet: free space and rerun the command")
    # A full disk: the partial .tmp-step_* folder goes and one line names the filesystem (#23)
    with guard(tmp, lambda: checkpoint_bytes(accelerator, previous), "checkpoint",
               cleanup=tmp if accelerator.is_main_process else None, kept=kept):
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}))
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        older = sorted(p for p in root.glob("step_*") if p != final)
        for stale in older[: max(0, len(older) - (keep - 1))]:
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def checkpoint_bytes(accelerator: Any, previous: Path | None = None) -> int:
    """What one checkpoint takes on disk: the size of the last complete one, else the trainable
    tensors plus the optimizer's state (AdamW: two tensors a parameter) estimated from memory."""
    if previous is not None:
        return size_of(previous)
    total = 0
    for model in getattr(accelerator, "_models", []):
        total += sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    for optimizer in getattr(accelerator, "_optimizers", []):
        for group in optimizer.param_groups:
            for p in group["params"]:
                total += 2 * p.numel() * p.element_size() if not optimizer.state.get(p) else sum(
                    t.numel() * t.element_size() for t in optimizer.state[p].values() if hasattr(t, "numel"))
    return total + (64 << 10)  # scheduler, RNG states, trainer_state.json


def load_checkpoint(accelerator: Any, path: Path) -> dict:
    """Restore weights, optimizer, scheduler and RNG states; return the loop's own state."""
    accelerator.load_state(str(path))
    return json.loads((path / STATE_FILE).read_text())


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _model_file(folder: Path, index: int) -> Path:
    return Path(folder) / (f"model_{index}.safetensors" if index else "model.safetensors")


def keep_trainable_hook(names: set[str]) -> Callable:
    """Save-state hook: checkpoint only what trains (a frozen 7B LLM is not copied each save)."""

    def hook(models: list, weights: list, output_dir: str) -> None:
        for i, state in enumerate(weights):
            weights[i] = {k: v for k, v in state.items() if k.removeprefix("module.") in names}

    return hook


def strict_load_hook(model: nn.Module, names: set[str]) -> Callable:
    """Load-state hook: load the trainable tensors ourselves, refusing any key mismatch.

    Accelerate would load the (trainable-only) file with ``strict=False`` and silently keep the
    current values of anything missing; this hook checks the file holds exactly ``names``, loads
    it into ``model`` (the unwrapped module) and takes the model off Accelerate's list.
    """
    from safetensors.torch import load_file

    def hook(models: list, input_dir: str) -> None:
        for i in range(len(models)):
            path = _model_file(Path(input_dir), i)
            if not path.is_file():
                raise UserError(f"checkpoint {input_dir} has no {path.name}; it is incomplete, delete it")
            state = {k.removeprefix("module."): v for k, v in load_file(str(path)).items()}
            missing, unexpected = sorted(names - state.keys()), sorted(state.keys() - names)
            if missing or unexpected:
                raise UserError(
                    f"checkpoint {input_dir} does not match this run's trainable tensors: "
                    f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                    f"(e.g. {unexpected[:2]}); was it written by another stage or model?"
                )
            model.load_state_dict(state, strict=False)
        models.clear()

    return hook


def has_checkpoint(root: Path) -> bool:
    """Whether any run folder under ``root`` holds a complete checkpoint."""
    return root.is_dir() and any(p.is_file() for p in root.glob(f"**/checkpoints/step_*/{STATE_FILE}"))


def claim_run_folder(root: Path, resume: bool, force: bool, resume_flag: str = "--resume") -> None:
    """Decide, before any work, what an existing run folder means for this command.

    ``--resume`` with no checkpoint under ``root`` is an error naming the folder (a mistyped
    ``--out`` must not silently start a multi-day run afresh). Without ``--resume``, the
    checkpoints of an unfinished run are only discarded with ``--force``.
    """
    root = Path(root)
    if resume:
        if not has_checkpoint(root):
            raise UserError(f"nothing to resume: no checkpoint in {root} (is --out the same as in the "
                            f"interrupted run? checkpoints are written every train.save_every steps)")
        return
    if has_checkpoint(root) and not force:
        raise UserError(f"{root} holds checkpoints of an unfinished run; pass {resume_flag} to continue it "
                        f"or --force to discard them")
    # Under `accelerate launch` every process gets here: one removes the old folder, and all wait
    # for it, or a late process would delete what an early one has started writing.
    _remove_once(root)


def release_run_folder(root: Path) -> None:
    """After the artifact is written: the run folder (checkpoints, live metrics) goes, and no
    process returns before the artifact exists (the CLI reads it next)."""
    _remove_once(root)


def _remove_once(root: Path) -> None:
    """The main process removes ``root``; every process waits until it has."""

    state = process_state()
    if state.is_main_process:
        shutil.rmtree(root, ignore_errors=True)
    state.wait_for_everyone()
