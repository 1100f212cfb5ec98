"""The one scaffold every training stage runs in: setup, train, save, cleanup.

warmup, transfer, transfer --from-vpg and tune-mma differ in which parameters train, on which
data, with which loss, and what their artifact holds. Everything else is the same and lives here,
once (torchtune's recipe object is the model: setup / train / save_checkpoint / cleanup, by
composition rather than inheritance):

- setup: refuse to overwrite ``--out`` without ``--force``; claim the run folder beside it
  (``.OUT.run``: checkpoints and live metrics of an unfinished run); one Accelerator with the
  recipe's precision and trackers.
- train: each phase ends through :meth:`StageRun.completed`, which turns a diverged run into
  ``RunDiverged`` naming the checkpoint to ``--resume`` from.
- save: :meth:`StageRun.artifact` opens the artifact writer (a temporary sibling renamed when
  complete) and stamps the fields every manifest carries: the resolved recipe, metrics, seed, world
  size and precision. Only the main process writes.
- cleanup: on success the run folder is released; trackers are closed whatever happens.

A stage is then ``with StageRun(cfg, out, ...) as run:`` around its own setup and training.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from vltool.artifacts import ArtifactWriter, ensure_writable
from vltool.errors import RunDiverged
from vltool.training.checkpoint import claim_run_folder, release_run_folder
from vltool.training.loop import TrainResult, make_accelerator
from vltool.training.progress import NullReporter, Reporter
from vltool.training.tracking import end_tracking, tracking_for


def run_root(out: Path) -> Path:
    """Checkpoints and live metrics of an unfinished run, beside ``out``; removed once it is written."""
    return out.parent / f".{out.name}.run"


class StageRun:
    """Shared setup and cleanup of one training stage run (see the module docstring)."""

    def __init__(self, cfg: Any, out: Path, force: bool = False, resume: bool = False,
                 reporter: Reporter | None = None) -> None:
        self.cfg, self.out, self.force, self.resume = cfg, Path(out), force, resume
        self.reporter = reporter or NullReporter()
        self.started = time.perf_counter()
        self.root = run_root(self.out)
        self.accelerator: Any = None

    def __enter__(self) -> StageRun:  # noqa: PYI034 -- not subclassed; typing.Self needs Python 3.11
        ensure_writable(self.out, self.force)
        claim_run_folder(self.root, self.resume, self.force)
        self.accelerator = make_accelerator(self.cfg.train.precision, tracking=tracking_for(self.cfg, self.out))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.accelerator is not None:
            end_tracking(self.accelerator)
        if kind is None:
            release_run_folder(self.root)
        # on an error the run folder stays: its checkpoints are what --resume continues from

    def phase_dir(self, phase: str) -> Path:
        return self.root / phase

    def completed(self, result: TrainResult, what: str, run_dir: Path) -> TrainResult:
        """``result`` when its run finished, else ``RunDiverged`` naming the checkpoint to resume from."""
        if result.stopped != "completed":
            raise RunDiverged(f"{what} stopped: {result.stopped}; the last good checkpoint is in "
                              f"{run_dir / 'checkpoints'} (lower train.lr or set train.on_nonfinite=skip, "
                              "then --resume)")
        return result

    @contextmanager
    def artifact(self, kind: str, metrics: dict[str, Any]) -> Iterator[ArtifactWriter | None]:
        """The artifact writer, with the fields every manifest carries; None on processes that do not write."""
        if not self.accelerator.is_main_process:
            yield None
            return
        with ArtifactWriter(self.out, kind, force=self.force, started=self.started) as writer:
            yield writer
            writer.manifest["recipe"] = self.cfg.model_dump(mode="json")
            writer.manifest["metrics"] = metrics
            writer.manifest["seed"] = self.cfg.train.seed
            writer.manifest["world_size"] = self.accelerator.num_processes
            writer.manifest["precision"] = str(self.accelerator.mixed_precision)
