"""Experiment trackers through Accelerate's own tracker API (TensorBoard, W&B, MLflow, Aim, Comet, ClearML).

Users of BLIP-2 / LaVIN watch their runs in a dashboard; ``metrics.jsonl`` stays the record
vltool reads back, and ``train.report_to`` (or ``--report-to``) sends the same numbers to
trackers as well: ``Accelerator(log_with=..., project_dir=...)``, ``init_trackers(run_name,
config=<the resolved recipe, flattened>)``, ``accelerator.log(row, step=...)`` for every logged
row, ``end_training()`` when the stage is done. Accelerate logs on the main process only.

What a tracker receives, per ``metrics.jsonl`` row of a stage:

- a loss row ``{"step", "loss", "lr", "samples_per_s"}`` -> ``train/loss``, ``train/lr``,
  ``train/samples_per_s`` at that step;
- a validation row ``{"step", "eval": {...}}`` -> ``eval/<metric>`` (fields that describe the
  scoring rather than score, such as ``ptb_tokenizer``, are left out: ``eval.metric_fields``).

Steps are the stage's optimizer steps, counted across its phases as the artifact's
``metrics.jsonl`` counts them (``transfer``: the fine-tuning continues after the warm-up's last
step), so a dashboard and the artifact show the same curve.

Resuming continues the same curve. Each phase that trains marks, at its first step, where its
rows start (TensorBoard: a ``SessionLog.START`` event, what ``SummaryWriter(purge_step=...)``
writes), so rows an interrupted run logged after its last checkpoint are dropped by
TensorBoard's reader instead of doubling the steps the resumed run logs again. Hosted trackers
start a new run on resume unless told to continue one (W&B: ``WANDB_RUN_ID`` + ``WANDB_RESUME=allow``).

The run's name defaults to the ``--out`` folder's name and local logs go to ``tracking/``
beside ``--out`` (``tensorboard --logdir runs/tracking`` then shows every run of ``runs/``),
both settable (``train.run_name``, ``train.tracking_dir``).
"""

from __future__ import annotations

import importlib.util
import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vltool.errors import UserError
from vltool.eval.metric_fields import is_metric

# tracker name (Accelerate's LoggerType) -> the package it needs
TRACKERS: dict[str, str] = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "aim": "aim",
                            "comet_ml": "comet_ml", "clearml": "clearml"}
CHOICES = (*TRACKERS, "none")


@dataclass
class Tracking:
    """Which trackers a run reports to, under what name and folder, with which config."""

    names: list[str]
    project_dir: Path
    run_name: str
    config: dict[str, Any] = field(default_factory=dict)


def parse_report_to(value: Any) -> list[str]:
    """``"tensorboard"``, ``"tensorboard,wandb"``, a list, or none -> validated tracker names."""
    if value is None or value is False:
        return ["none"]
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = [str(item).strip().lower() for item in items if str(item).strip()] or ["none"]
    unknown = [n for n in names if n not in CHOICES]
    if unknown:
        raise ValueError(f"unknown tracker {', '.join(unknown)}; choose from {', '.join(CHOICES)}")
    if "none" in names and len(names) > 1:
        raise ValueError("'none' cannot be combined with trackers")
    return names


def tracking_for(recipe: Any, out: Path) -> Tracking | None:
    """The tracking a stage's recipe asks for (None: ``report_to: none``), its packages checked."""
    settings = recipe.train
    names = [n for n in settings.report_to if n != "none"]
    if not names:
        return None
    missing = [n for n in names if importlib.util.find_spec(TRACKERS[n]) is None]
    if missing:
        raise UserError(f"train.report_to={','.join(names)} needs the {', '.join(TRACKERS[n] for n in missing)} "
                        f"package; pip install {' '.join(TRACKERS[n] for n in missing)} (or --report-to none)")
    out = Path(out)
    project_dir = Path(settings.tracking_dir) if settings.tracking_dir else out.parent / "tracking"
    return Tracking(names, project_dir, settings.run_name or out.name, flat_config(recipe.model_dump(mode="json")))


def flat_config(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested recipe as ``{"train.lr": 1e-4, "data.train": '["demo:caption"]', ...}``: trackers'
    hyper-parameter tables (TensorBoard's HParams, MLflow params) take flat scalars; a list or
    ``None`` becomes its JSON text."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_config(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


def accelerator_kwargs(tracking: Tracking | None) -> dict[str, Any]:
    """What ``Accelerator(...)`` needs for these trackers."""
    if tracking is None:
        return {}
    return {"log_with": list(tracking.names), "project_dir": str(tracking.project_dir)}


# Steps of earlier phases, per Accelerator (a stage shares one Accelerator across its phases).
_STEP_OFFSETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def start_tracking(accelerator: Any, tracking: Tracking | None) -> None:
    """``init_trackers`` with the run name and the resolved recipe as its config."""
    if tracking is None:
        return
    if accelerator.is_main_process:
        tracking.project_dir.mkdir(parents=True, exist_ok=True)
    accelerator.init_trackers(tracking.run_name, config=tracking.config)
    _STEP_OFFSETS[accelerator] = 0


def begin_phase(accelerator: Any, total_steps: int) -> int:
    """The tracker step offset of a ``train()`` call (steps of the stage's earlier phases)."""
    if accelerator not in _STEP_OFFSETS:
        return 0
    offset = _STEP_OFFSETS[accelerator]
    _STEP_OFFSETS[accelerator] = offset + total_steps
    return offset


def continue_steps(accelerator: Any, steps: int) -> None:
    """Start this stage's tracker steps after ``steps`` done elsewhere (``transfer --from-warmup``:
    the warm-up artifact's steps, as its ``metrics.jsonl`` counts them)."""
    if accelerator in _STEP_OFFSETS:
        _STEP_OFFSETS[accelerator] += steps


def restart_curve(accelerator: Any, first_step: int) -> None:
    """Mark that this phase's rows start at ``first_step``: rows at or after it from an earlier,
    interrupted run of the same run folder are hidden (TensorBoard's purge on ``SessionLog.START``)."""
    if not accelerator.trackers or not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog

            writer = tracker.tracker
            writer._get_file_writer().add_event(Event(step=first_step, session_log=SessionLog(status=SessionLog.START)))
            writer.flush()


def tracker_values(row: Mapping[str, Any]) -> dict[str, float]:
    """A ``metrics.jsonl`` row as tracker values (``train/loss``, ``eval/CIDEr``, ...); scores only."""

    values: dict[str, float] = {}
    for key, value in row.items():
        if key == "eval" and isinstance(value, Mapping):
            values.update({f"eval/{k}": float(v) for k, v in value.items() if is_metric(k)})
        elif key not in ("step", "phase") and isinstance(value, (int, float)) and not isinstance(value, bool):
            values[f"train/{key}"] = float(value)
    return values


def log_row(accelerator: Any, row: Mapping[str, Any], offset: int) -> None:
    """Send one logged row to the trackers (Accelerate logs on the main process only)."""
    if accelerator.trackers:
        accelerator.log(tracker_values(row), step=offset + int(row["step"]))


def end_tracking(accelerator: Any) -> None:
    """``end_training()`` (finish every tracker) when this Accelerator has trackers; a no-op otherwise."""
    if accelerator.log_with:
        accelerator.end_training()
