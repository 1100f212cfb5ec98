"""Experiment trackers (``--report-to``), tested with TensorBoard for real: real ``vltool``
subprocesses on the quick demo world write event files, which TensorBoard's own reader
(``event_accumulator``) reads back and which must say what the artifact's ``metrics.jsonl`` says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")
from support.run import launch, vltool
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from vltool.eval.metric_fields import is_metric
from vltool.training.tracking import flat_config, parse_report_to

TRANSFER = ["transfer", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", "demo:caption",
            "--val-data", "demo:caption", "warmup.max_steps=4", "train.max_steps=6", "data.max_train_samples=48",
            "data.max_val_samples=8", "train.batch_size=8", "eval.max_new_tokens=4", "eval.every=2",
            "train.log_every=1", "train.save_every=2"]


def expected_scalars(artifact: Path) -> dict[str, list[tuple[int, float]]]:
    """What the trackers must have received: every metrics.jsonl row, as (step, value) per tag."""
    tags: dict[str, list[tuple[int, float]]] = {}
    for line in (artifact / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "eval" in row:
            values = {f"eval/{k}": v for k, v in row["eval"].items() if is_metric(k)}
        else:
            values = {f"train/{k}": row[k] for k in ("loss", "lr", "samples_per_s")}
        for tag, value in values.items():
            tags.setdefault(tag, []).append((row["step"], value))
    return tags


def logged_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_same_curves(logged: dict, expected: dict) -> None:
    assert sorted(logged) == sorted(expected)
    for tag, points in expected.items():
        assert [s for s, _ in logged[tag]] == [s for s, _ in points], tag
        assert [v for _, v in logged[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag  # float32


def test_transfer_reports_to_tensorboard_what_metrics_jsonl_says(quick_world: Path, tmp_path: Path) -> None:
    out, logs = tmp_path / "vpg", tmp_path / "tb"
    done = vltool(home=quick_world, args=[*TRANSFER, "--out", str(out), "--json", "--report-to", "tensorboard",
                                "--run-name", "first-try", "--tracking-dir", str(logs)])
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # stdout is the JSON and nothing else
    assert result["steps"] == 10 and result["artifact"] == str(out) and result["kind"] == "vpg"
    assert "val_loss" in result["metrics"] and "ptb_tokenizer" not in result["metrics"]
    assert "Loading weights" not in done.stderr and "ptb_tokenizer" not in done.stderr

    expected = expected_scalars(out)
    assert [s for s, _ in expected["train/loss"]] == list(range(1, 11))  # warm-up 1-4, fine-tuning 5-10
    assert_same_curves(logged_scalars(logs / "first-try"), expected)

    # the resolved recipe is the run's config (TensorBoard's HParams)
    manifest = json.loads((out / "manifest.json").read_text())
    [hparams_dir] = [p.parent for p in (logs / "first-try").glob("*/events.out.tfevents.*")]
    acc = EventAccumulator(str(hparams_dir))
    acc.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(acc.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    stored = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.session_start_info.hparams.items()}
    want = flat_config(manifest["recipe"])
    assert stored.keys() == want.keys() and stored["train.report_to"] == '["tensorboard"]'
    assert stored == pytest.approx({k: float(v) if isinstance(v, (int, float)) else v for k, v in want.items()})


@pytest.mark.slow
def test_a_resumed_run_continues_the_same_curve(quick_world: Path, tmp_path: Path) -> None:
    out, logs = tmp_path / "vpg", tmp_path / "tb"
    args = [*TRANSFER, "--out", str(out), "--report-to", "tensorboard", "--tracking-dir", str(logs)]
    killed = vltool(home=quick_world, args=args, fault="finetune:5:KILL")  # logged up to step 9, checkpoint at 8
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = vltool(home=quick_world, args=[*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    raw = [event.step for path in sorted((logs / "vpg").glob("events.out.tfevents.*"))
           for event in EventFileLoader(str(path)).Load() if event.summary.value
           and event.summary.value[0].tag == "train/loss"]
    assert raw.count(9) == 2  # the killed run logged step 9 and the resumed one logged it again...
    assert_same_curves(logged_scalars(logs / "vpg"), expected_scalars(out))  # ...and the reader shows it once


def test_report_to_takes_the_documented_trackers_only() -> None:
    assert parse_report_to("tensorboard,wandb") == ["tensorboard", "wandb"]
    assert parse_report_to(None) == ["none"] and parse_report_to(["mlflow"]) == ["mlflow"]
    for bad in ("tensorbord", "none,wandb"):
        with pytest.raises(ValueError):
            parse_report_to(bad)


def test_a_bad_tracker_is_one_line_exit_2(tmp_path: Path) -> None:
    done = vltool(["warmup", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--dry-run", "--report-to",
                   "tensorbord"], timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "tensorbord" in done.stderr and "tensorboard, wandb, mlflow, aim, comet_ml, clearml, none" in done.stderr


TWO_PROCESS_SCRIPT = """
import sys
from pathlib import Path
import torch
from support.loop_fixture import TinyNet, make_data, mse, settings
from vltool.training.loop import make_accelerator, train
from vltool.training.tracking import Tracking, end_tracking

out = Path(sys.argv[1])
torch.manual_seed(0)
accelerator = make_accelerator("no", cpu=True, tracking=Tracking(["tensorboard"], out / "tb", "ddp", {"train.lr": 0.03}))
train(TinyNet(), mse, make_data(), settings(6), run_dir=out, accelerator=accelerator)
(out / f"trackers_rank{accelerator.process_index}").write_text(str(len(accelerator.trackers)))
end_tracking(accelerator)
"""


@pytest.mark.dist
def test_two_processes_log_once_from_the_main_process(tmp_path: Path) -> None:
    script = tmp_path / "two.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    launch(script, [tmp_path])  # 2 CPU processes; tests/ on PYTHONPATH for ``support``
    assert (tmp_path / "trackers_rank1").is_file()  # both processes ran to the end
    scalar_files = list((tmp_path / "tb" / "ddp").glob("events.out.tfevents.*"))
    assert len(scalar_files) == 1  # one writer: the main process
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = logged_scalars(tmp_path / "tb" / "ddp")
    assert [s for s, _ in logged["train/loss"]] == [r["step"] for r in rows] == list(range(1, 7))
    assert [v for _, v in logged["train/loss"]] == pytest.approx([r["loss"] for r in rows], rel=1e-6)


@pytest.mark.slow
def test_transfer_from_warmup_counts_on_from_the_warmup_steps(quick_world: Path, tmp_path: Path) -> None:
    warm = tmp_path / "warm"
    small = [a for a in TRANSFER[9:] if not a.startswith("train.max_steps")]  # the overrides, warm-up length kept
    done = vltool(home=quick_world, args=["warmup", *TRANSFER[1:9], *small, "--out", str(warm)])
    assert done.returncode == 0, done.stderr[-3000:]
    out, logs = tmp_path / "vpg", tmp_path / "tb"
    done = vltool(home=quick_world, args=["transfer", "--from-warmup", str(warm), "train.max_steps=6", *small, "--out", str(out),
                                "--report-to", "tensorboard", "--tracking-dir", str(logs)])
    assert done.returncode == 0, done.stderr[-3000:]
    logged = logged_scalars(logs / "vpg")
    assert [s for s, _ in logged["train/loss"]] == list(range(5, 11))  # after the warm-up's 4 steps
    expected = {tag: [(s, v) for s, v in points if s > 4] for tag, points in expected_scalars(out).items()}
    assert_same_curves(logged, expected)


def test_run_name_and_folder_default_to_the_out_folder_and_a_missing_package_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from vltool.config.loader import load_recipe
    from vltool.errors import UserError
    from vltool.training.tracking import tracking_for

    cfg = load_recipe(None, "transfer", ["src=a", "dst=b", "train.report_to=tensorboard"], {})
    found = tracking_for(cfg, tmp_path / "runs" / "vpg")
    assert (found.names, found.run_name, found.project_dir) == (["tensorboard"], "vpg", tmp_path / "runs" / "tracking")
    assert found.config["train.lr"] == cfg.train.lr and found.config["train.report_to"] == '["tensorboard"]'
    named = load_recipe(None, "transfer", ["src=a", "dst=b", "train.report_to=tensorboard", "train.run_name=try-2",
                                           f"train.tracking_dir={tmp_path / 'tb'}"], {})
    assert (tracking_for(named, tmp_path / "vpg").run_name, tracking_for(named, tmp_path / "vpg").project_dir) == (
        "try-2", tmp_path / "tb")
    assert tracking_for(load_recipe(None, "transfer", ["src=a", "dst=b", ], {}), tmp_path / "vpg") is None  # report_to: none

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match=r"needs the wandb package; pip install wandb \(or --report-to none\)"):
        tracking_for(load_recipe(None, "transfer", ["src=a", "dst=b", "train.report_to=tensorboard,wandb"], {}), tmp_path / "vpg")
