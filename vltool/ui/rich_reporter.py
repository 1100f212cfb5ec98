"""The Rich progress bar behind the ``Reporter`` protocol (CLI side only).

Stages and the training loop never import Rich; the CLI hands them this reporter, which draws
one bar per task with the latest loss, learning rate, throughput and time left. When stderr is
not a terminal (nohup, SLURM, a pipe) a live bar shows nothing until it ends, so each logged row
is printed as one plain, timestamped line instead: the job's log file is then a readable record.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichReporter:
    """A transient-free progress display: finished tasks stay on screen as a record."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task_id: Any = None
        self.started = False
        self.live = self.console.is_terminal
        self.task_name, self.total, self.t0, self.first = "", 0, 0.0, 0

    def start(self, task: str, total: int) -> None:
        self.task_name, self.total, self.t0, self.first = task, total, time.perf_counter(), -1
        if not self.live:
            self.console.print(f"{_now()} {task}: {total} steps", highlight=False)
            return
        if not self.started:
            self.progress.start()
            self.started = True
        self.task_id = self.progress.add_task(task, total=total, info="")

    def update(self, done: int, **fields: Any) -> None:
        info = "  ".join(_fmt(k, v) for k, v in fields.items())
        if self.first < 0:  # the first update after start: a resumed run starts counting here
            self.first, self.t0 = done, time.perf_counter()
        if not self.live:
            if fields:
                self.console.print(f"{_now()} {self.task_name} step {done}/{self.total}  {info}  "
                                   f"eta {self._eta(done)}", highlight=False)
            return
        self.progress.update(self.task_id, completed=done, info=info)

    def _eta(self, done: int) -> str:
        rate = (done - self.first) / max(time.perf_counter() - self.t0, 1e-9)
        if rate <= 0:
            return "?"
        seconds = int((self.total - done) / rate)
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    def finish(self, **fields: Any) -> None:
        if not self.live:
            after = f" after {fields['steps']} steps" if "steps" in fields else ""
            self.console.print(f"{_now()} {self.task_name}: {fields.get('stopped', 'done')}{after}", highlight=False)
            return
        if self.task_id is not None:
            task = self.progress.tasks[-1]
            self.progress.update(self.task_id, completed=task.completed if task.total is None else task.total)

    def log(self, message: str) -> None:
        self.console.print(message if self.live else f"{_now()} {message}", highlight=False, markup=False)

    def close(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, float):
        if key == "lr":
            return f"lr {value:.2e}"
        if key == "samples_per_s":
            return f"{value:.1f} samples/s"
        return f"{key} {value:.4f}"
    return f"{key} {value}"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
