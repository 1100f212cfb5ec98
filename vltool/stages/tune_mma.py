"""``vltool tune-mma`` (LaVIN's Mixture-of-Modality Adaptation): not landed yet.

The command, its flags and recipes exist so shell scripts and recipes validate today; running it
says plainly that the stage is not implemented yet (exit code 2) instead of pretending to work.
"""

from __future__ import annotations

from typing import Any

from vltool.errors import NotImplementedYet

MESSAGE = "tune-mma (LaVIN MM-Adapters) is not implemented yet in this version of vltool"


def run(*args: Any, **kwargs: Any) -> None:
    raise NotImplementedYet(MESSAGE)


def dry_run(*args: Any, **kwargs: Any) -> None:
    raise NotImplementedYet(MESSAGE)
