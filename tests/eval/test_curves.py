"""The speed-up definition: scratch steps to its best / transfer steps to the same quality."""

from __future__ import annotations

import json
from pathlib import Path

from vltool.eval.curves import read_curve, speedup


def test_speedup_follows_the_paper_definition(tmp_path: Path) -> None:
    scratch = [(100, 0.2), (200, 0.5), (300, 0.6), (400, 0.6)]  # best 0.6, first reached at 300
    transfer = [(25, 0.4), (50, 0.61), (75, 0.7)]  # reaches 0.6 at step 50
    result = speedup(scratch, transfer, "cider")
    assert (result.best_scratch, result.steps_scratch, result.steps_transfer) == (0.6, 300, 50)
    assert result.ratio == 6.0
    never = speedup(scratch, [(10, 0.1)], "cider")
    assert never.steps_transfer is None and never.ratio is None and never.best_transfer == 0.1
    loss = speedup([(10, 2.0), (20, 1.0)], [(5, 1.5), (8, 0.9)], "val_loss", higher_is_better=False)
    assert loss.ratio == 20 / 8 and loss.best_transfer == 0.9


def test_read_curve_takes_eval_rows_and_offsets_steps(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 10, "loss": 1.0}, {"step": 10, "eval": {"cider": 0.3}}, {"step": 20, "eval": {"x": 1}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_curve(path, "cider", offset=5) == [(15, 0.3)]
