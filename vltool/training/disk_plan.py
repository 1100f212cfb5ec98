"""Before training: will what the run writes fit beside ``--out``? One warning line if not (#23).

A run writes, beside ``--out``: ``train.keep_checkpoints`` checkpoints of every phase (each the
trainable tensors in fp32 plus AdamW's two state tensors per parameter, i.e. 12 bytes a trainable
parameter, and a little RNG / scheduler state), then the artifact (the trained tensors, 4 bytes a
parameter); a warm-up may also build the feature cache (``VLTOOL_HOME``: counted against its own
filesystem). Finding out at the second checkpoint of a week-long run is too late, so stages call
``warn_if_short`` once, before the first step; the run still starts (the estimate can be wrong,
and space may be freed meanwhile), and a disk that does fill stops it with exit code 4
(``vltool.artifacts.disk_space``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from vltool.artifacts.disk_space import free_bytes, human, mount_point, same_filesystem
from vltool.training.processes import is_main_process

CHECKPOINT_BYTES_PER_PARAM = 12  # fp32 weights + AdamW exp_avg + exp_avg_sq
CHECKPOINT_OVERHEAD = 64 << 10  # scheduler, RNG states, trainer_state.json
ARTIFACT_OVERHEAD = 1 << 20  # configs, processor files, metrics.jsonl, manifest


def trainable_count(params: Sequence[nn.Parameter] | nn.Module) -> int:
    items = params.parameters() if isinstance(params, nn.Module) else params
    return sum(p.numel() for p in items if p.requires_grad)


def run_bytes(phase_params: Sequence[int], keep: int, artifact_params: int) -> dict[str, int]:
    """Bytes the run writes beside ``--out``: the checkpoints kept (all phases) and the artifact."""
    keep = max(1, keep)
    checkpoints = sum(keep * (n * CHECKPOINT_BYTES_PER_PARAM + CHECKPOINT_OVERHEAD) for n in phase_params)
    return {"checkpoints": checkpoints, "artifact": 4 * artifact_params + ARTIFACT_OVERHEAD}


def shortfall(out: Path, writes: dict[str, int], cache: Path | None = None, cache_bytes: int = 0) -> str | None:
    """The warning line when a filesystem lacks room for what goes on it, else None."""
    places: dict[Path, tuple[Path, dict[str, int]]] = {}
    places[mount_point(out.parent)] = (out.parent, dict(writes))
    if cache is not None and cache_bytes:
        if same_filesystem(cache, out.parent):
            places[mount_point(out.parent)][1]["feature cache"] = cache_bytes
        else:
            places[mount_point(cache)] = (cache, {"feature cache": cache_bytes})
    short = []
    for mount, (where, parts) in places.items():
        needed, free = sum(parts.values()), free_bytes(where)
        if free < needed:
            detail = ", ".join(f"{name} {human(size)}" for name, size in parts.items())
            short.append(f"{human(free)} free on {mount} for {where}, but this run writes about {human(needed)} "
                         f"there ({detail})")
    if not short:
        return None
    return ("warning: " + "; ".join(short) + ". It stops with exit code 4 if the disk fills; the last complete "
            "checkpoint is kept for --resume")


def warn_if_short(reporter, out: Path, writes: dict[str, int], cache: Path | None = None,
                  cache_bytes: int = 0) -> str | None:
    """``shortfall`` said through the reporter (stderr in the CLI), on the main process only."""

    line = shortfall(Path(out).absolute(), writes, cache, cache_bytes)
    if line and is_main_process():
        reporter.log(line)
    return line
