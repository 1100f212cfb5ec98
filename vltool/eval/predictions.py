"""Saved predictions: reading, writing, and matching them to a dataset's ids.

``vltool eval --predictions FILE`` scores outputs with no model, including other tools', so the
reader is strict where mistakes would silently skew a score (bad lines, repeated, missing or
unknown ids are errors naming the line / ids with counts) and lenient about harmless shape:

* JSON Lines ``{"id", "prediction"}`` (what ``vltool eval --out`` writes), optionally with
  ``"nll"`` (summed answer NLL, nats) and ``"tokens"`` (answer token count) for perplexity;
* the official result files of the benchmarks, a JSON list of ``{"question_id", "answer"}``
  (VQA) or ``{"image_id", "caption"}`` (COCO), and the same rows as JSON Lines.

Ids are compared as strings, so ``391895`` and ``"391895"`` are the same id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vltool.data.jsonl import json_lines
from vltool.data.sample import Sample
from vltool.errors import UserError

ID_KEYS = ("id", "question_id", "image_id")
TEXT_KEYS = ("prediction", "answer", "caption")


@dataclass
class Predictions:
    """Prediction text per id, and (when the file has them) NLL sum + token count per id."""

    texts: dict[str, str] = field(default_factory=dict)
    nll: dict[str, tuple[float, int]] = field(default_factory=dict)


def _rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(position, parsed row) for a JSON list file ("item 0") or a JSON Lines file ("line 1")."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}): {err.msg}") from None
        for index, row in enumerate(rows):
            yield f"item {index}", row
        return
    for number, row in json_lines(path):
        yield f"line {number}", row


def _pick(row: dict, keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k in row), None)


def read_predictions(path: str | Path) -> Predictions:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"predictions file {path} does not exist")
    out = Predictions()
    first_seen: dict[str, str] = {}
    for position, row in _rows(path):
        where = f"{path} {position}"
        id_key = _pick(row, ID_KEYS) if isinstance(row, dict) else None
        text_key = _pick(row, TEXT_KEYS) if isinstance(row, dict) else None
        if id_key is None or text_key is None:
            raise UserError(f"{where}: expected an object with an 'id' and a 'prediction' "
                            f"(or question_id/answer, image_id/caption), found {str(row)[:80]}")
        text = row[text_key]
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise UserError(f"{where}: {text_key!r} must be a string, found {type(text).__name__}")
        key = str(row[id_key])
        if key in first_seen:
            raise UserError(f"{where}: id {key!r} was already given at {first_seen[key]}")
        first_seen[key] = position
        out.texts[key] = str(text)
        if "nll" in row or "tokens" in row:
            try:
                out.nll[key] = (float(row["nll"]), int(row["tokens"]))
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{where}: 'nll' (a number) and 'tokens' (an integer) must come together") from None
    if not out.texts:
        raise UserError(f"predictions file {path} has no predictions")
    return out


def check_ids(samples: Sequence[Sample], predictions: Mapping[str, Any], source: str = "predictions",
              dataset: str = "the dataset", examples: int = 3) -> None:
    """Every sample has a prediction and every prediction a sample; else one line with counts."""
    ids = [s.id for s in samples]
    known = set(ids)
    if len(known) != len(ids):
        seen: set[str] = set()
        repeated = [i for i in ids if i in seen or seen.add(i)]
        raise UserError(f"{dataset} has {len(repeated)} repeated ids (e.g. {', '.join(repeated[:examples])}), so "
                        f"predictions cannot be matched to it by id; score it as an evaluation file with one row "
                        f"per id")
    missing = [i for i in ids if i not in predictions]
    unknown = [str(i) for i in predictions if i not in known]
    if not missing and not unknown:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} dataset ids have no prediction (e.g. {', '.join(missing[:examples])})")
    if unknown:
        parts.append(f"{len(unknown)} predictions have ids not in {dataset} (e.g. {', '.join(unknown[:examples])})")
    hint = "; no id matches at all: is this the right --data SPEC and --split?" if len(missing) == len(ids) else ""
    raise UserError(f"{source}: " + "; ".join(parts) + hint)


def align(samples: Sequence[Sample], predictions: Mapping[str, str], source: str = "predictions",
          dataset: str = "the dataset") -> list[str]:
    """Predictions in sample order, after ``check_ids``."""
    check_ids(samples, predictions, source, dataset)
    return [predictions[s.id] for s in samples]


def write_predictions(path: str | Path, samples: Sequence[Sample], texts: Sequence[str],
                      nll: Sequence[tuple[float, int]] | None = None) -> Path:
    """The JSON Lines file ``read_predictions`` reads back (and other tools can produce)."""
    path = Path(path)
    lines = []
    for k, (sample, text) in enumerate(zip(samples, texts, strict=True)):
        row: dict[str, Any] = {"id": sample.id, "prediction": text}
        if nll is not None:
            row["nll"], row["tokens"] = float(nll[k][0]), int(nll[k][1])
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")
    return path
