"""Reading validation curves from ``metrics.jsonl`` and measuring speed-ups between them.

VPGTrans states its speed-up as "epochs (steps) the transferred VPG needs to reach the
from-scratch run's best quality"; ``speedup`` implements exactly that definition on two curves
so the demo, ``bench/`` and users' own runs compute it the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Speedup:
    """From-scratch steps to its best / transfer steps to reach that same quality."""

    metric: str
    best_scratch: float
    steps_scratch: int
    steps_transfer: int | None
    ratio: float | None
    best_transfer: float | None = None  # shown when the transfer never gets there: how far it stayed


def read_curve(path: Path, metric: str, offset: int = 0) -> list[tuple[int, float]]:
    """(step + offset, value) of ``metric`` from the ``eval`` rows of a metrics.jsonl file."""
    points = []
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        value = row.get("eval", {}).get(metric)
        if value is not None:
            points.append((row["step"] + offset, float(value)))
    return points


def first_reaching(curve: list[tuple[int, float]], target: float, higher_is_better: bool) -> int | None:
    for step, value in curve:
        if (value >= target) if higher_is_better else (value <= target):
            return step
    return None


def speedup(
    scratch: list[tuple[int, float]],
    transfer: list[tuple[int, float]],
    metric: str,
    higher_is_better: bool = True,
) -> Speedup:
    """Compare two validation curves under the paper's definition of speed-up.

    The from-scratch run's best value and the first step it got there set the target; the
    transfer curve's first step at or beyond that value is the transfer's cost. Both curves
    count every optimizer step the method paid for (warm-up included for transfer).
    """
    if not scratch:
        raise ValueError("the from-scratch curve is empty")
    pick = max if higher_is_better else min
    best = pick(value for _, value in scratch)
    steps_scratch = first_reaching(scratch, best, higher_is_better)
    steps_transfer = first_reaching(transfer, best, higher_is_better)
    ratio = steps_scratch / steps_transfer if steps_transfer else None
    best_transfer = pick((value for _, value in transfer), default=None)
    return Speedup(metric, best, steps_scratch, steps_transfer, ratio, best_transfer)
