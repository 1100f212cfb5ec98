"""How training and stages report progress without depending on a UI library.

Stages and the loop call a ``Reporter``; the CLI passes a Rich implementation
(``vltool.ui.rich_reporter``), library users get ``NullReporter`` (silent) by default. Only the
main process ever receives a real reporter, so multi-process runs print one bar.
"""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    """Progress sink: one task at a time, with free-form numeric fields (loss, lr, samples/s)."""

    def start(self, task: str, total: int) -> None: ...

    def update(self, done: int, **fields: Any) -> None: ...

    def finish(self, **fields: Any) -> None: ...

    def log(self, message: str) -> None: ...


class NullReporter:
    """Reports nothing: the default for library calls and non-main processes."""

    def start(self, task: str, total: int) -> None:
        pass

    def update(self, done: int, **fields: Any) -> None:
        pass

    def finish(self, **fields: Any) -> None:
        pass

    def log(self, message: str) -> None:
        pass
