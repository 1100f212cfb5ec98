"""The Rich progress bar behind the ``Reporter`` protocol (CLI side only).

Stages and the training loop never import Rich; the CLI hands them this reporter, which draws
one bar per task with the latest loss, learning rate and throughput.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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
            console=self.console,
        )
        self.task_id: Any = None
        self.started = False

    def start(self, task: str, total: int) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        self.task_id = self.progress.add_task(task, total=total, info="")

    def update(self, done: int, **fields: Any) -> None:
        info = "  ".join(_fmt(k, v) for k, v in fields.items())
        self.progress.update(self.task_id, completed=done, info=info)

    def finish(self, **fields: Any) -> None:
        if self.task_id is not None:
            task = self.progress.tasks[-1]
            self.progress.update(self.task_id, completed=task.completed if task.total is None else task.total)

    def log(self, message: str) -> None:
        self.progress.console.print(message)

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
