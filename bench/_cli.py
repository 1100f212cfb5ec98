"""Helpers for the bench scripts: run vltool subcommands in-process and read their artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vltool.cli import app


def vltool(*argv: str) -> None:
    app(list(argv), standalone_mode=False)


def manifest(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "manifest.json").read_text())
