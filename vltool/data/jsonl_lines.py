"""Reading JSON Lines files with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vltool.errors import UserError


def read_jsonl_rows(path: Path, what: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; bad JSON or missing keys name the line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file {path} does not exist")
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {number} is not valid JSON: {err.msg}") from None
        if not isinstance(row, dict) or any(key not in row for key in required):
            raise UserError(f"{path} line {number}: expected an object with {', '.join(repr(k) for k in required)}")
        yield number, row
