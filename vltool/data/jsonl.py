"""``jsonl:PATH`` (one ``{image?, prompt, answer, id?, references?}`` object a line), and the
JSON-file helpers every reader shares.

Real datasets arrive as hand-edited or script-written JSON, so every reader fails the same way
on bad input: one line naming the file, the item (JSON lists: index from 0) or line (JSON Lines:
from 1), the key, and what was expected. Those checks live here so the readers stay short.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from vltool.data.images import resolve_image_path
from vltool.data.sample import Sample
from vltool.data.sample_table import SampleTable, SampleTableBuilder
from vltool.errors import UserError


def json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number from 1, parsed value) for every non-blank line; bad JSON names the line."""
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {number} is not valid JSON: {err.msg}") from None


def read_jsonl_rows(path: Path, what: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a row that is no object or lacks a key names the line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file {path} does not exist")
    for number, row in json_lines(path):
        if not isinstance(row, dict) or any(key not in row for key in required):
            raise UserError(f"{path} line {number}: expected an object with {', '.join(repr(k) for k in required)}")
        yield number, row


def data_path(arg: str, kind: str) -> Path:
    """The file (or folder) a ``kind:PATH`` SPEC names, ``~`` expanded; a missing one is a UserError."""
    if not arg.strip():
        raise UserError(f"data spec '{kind}:' names no path; expected {kind}:PATH")
    path = Path(arg).expanduser()
    if not path.exists():
        raise UserError(f"{kind} data {path} does not exist")
    return path


def read_json(path: Path, what: str) -> Any:
    """A whole JSON document; a syntax error names the line and column."""
    if not path.is_file():
        raise UserError(f"{what} file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}): {err.msg}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text ({err.reason}); expected a {what} JSON file") from None


def expect_list(data: Any, path: Path, what: str) -> list[Any]:
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a {what} file, a JSON list of objects, but found a {type(data).__name__}")
    return data


def expect_keys(row: Any, keys: Iterable[str], where: str, what: str) -> dict[str, Any]:
    """``row`` must be an object holding ``keys``; the error names the first missing key."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a {what} object, found a {type(row).__name__}")
    for key in keys:
        if key not in row:
            raise UserError(f"{where}: missing key {key!r} (a {what} needs {', '.join(repr(k) for k in keys)})")
    return row


def list_rows(path: Path, file_what: str, list_what: str, row_what: str,
              keys: tuple[str, ...]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(index, "PATH item N", object) for each row of a JSON-list file (COCO, Alpaca, LLaVA...), each
    checked to be an object holding ``keys``: the one shape of every such reader's loop."""
    for index, row in enumerate(expect_list(read_json(path, file_what), path, list_what)):
        where = f"{path} item {index}"
        yield index, where, expect_keys(row, keys, where, row_what)


def expect_str(row: dict[str, Any], key: str, where: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise UserError(f"{where}: {key!r} must be a string, found {type(value).__name__}")
    return value


def read_jsonl(path: str | Path, images: str | Path | None = None) -> SampleTable:
    """Rows ``{image?, prompt, answer, id?, references?}``; ``id`` defaults to the line number.

    A relative ``image`` is under ``images`` when given, else next to the JSONL file.
    """
    path = data_path(str(path), "jsonl")
    samples = SampleTableBuilder()
    for number, row in read_jsonl_rows(path, "JSONL", ("prompt", "answer")):
        where = f"{path} line {number}"
        prompt, answer = expect_str(row, "prompt", where), expect_str(row, "answer", where)
        refs = row.get("references", [answer])
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            raise UserError(f"{where}: 'references' must be a non-empty list of strings")
        image = row.get("image")
        if image is not None and not isinstance(image, str):
            raise UserError(f"{where}: 'image' must be a path string or null, found {type(image).__name__}")
        image = resolve_image_path(image, images, path.parent) if image else None
        samples.append(Sample(str(row.get("id", number)), image, prompt, answer, list(refs)))
    return samples.finish()
