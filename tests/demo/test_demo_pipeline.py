"""`vltool demo --quick` runs the whole pipeline end to end and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vltool.cli import app


def test_quick_demo_writes_report_plots_and_numbers(quick_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)], env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    v = report["vpgtrans"]
    assert v["steps_scratch"] >= 1 and v["warmup_steps"] == 40
    # the speed-up is the ratio of the two step counts, or None exactly when the transfer arm never
    # reached the from-scratch arm's best (the quick world is too small to promise either)
    if v["steps_transfer"] is None:
        assert v["speedup"] is None
    else:
        assert 1 <= v["steps_transfer"] and v["speedup"] == pytest.approx(v["steps_scratch"] / v["steps_transfer"])
    assert "speedup_val_loss" in v and v["metric"].startswith("attr_acc")
    assert report["merge"]["max_logit_diff"] <= 1e-4
    assert {"trainable_params", "total_params", "sqa_accuracy_before", "sqa_accuracy_after"} <= report["mma"].keys()
    assert set(report["eval"]) == {"demo:caption", "demo:vqa", "demo:sqa", "demo:text"}
    assert report["profile"] == "quick" and report["packages"]["torch"] == torch.__version__
    for plot in ("transfer_vs_scratch_val_loss.png", "transfer_vs_scratch_attr_acc.png", "quality_per_stage.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
    text = (out / "report.md").read_text()
    assert "## Environment" in text and "cannot reproduce real-scale" in text
    assert "vltool transfer -r demo/transfer-opt-s-to-llama" in text
    # the shipped shell script runs the same subcommands
    script = (Path(__file__).parents[2] / "recipes" / "demo.sh").read_text()
    assert all(step in script for step in ("vltool warmup", "--from-warmup", "--from-scratch", "vltool merge"))
