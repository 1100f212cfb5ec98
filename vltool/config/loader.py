"""Load a recipe: YAML file -> CLI flags -> dotted ``key=value`` overrides -> typed schema.

Every problem is collected and reported at once, each on its own line naming the file and the
dotted key, with a close-match suggestion for misspelt keys; the caller gets one ``UserError``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from vltool.config.schema import RECIPE_TYPES, Strict
from vltool.errors import UserError


def read_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"recipe {path}{where} is not valid YAML: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"recipe {path} must be a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=3e-4`` -> (["train", "lr"], 0.0003); values are parsed as YAML scalars."""
    if "=" not in text:
        raise UserError(f"override {text!r} must look like key=value (dotted keys: train.lr=3e-4)")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_dotted(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str], flags: dict[str, Any] | None = None) -> dict:
    """Flags (``None`` = not given) then ``key=value`` overrides win over the file's values."""
    merged = _deep_copy(data)
    for key, value in (flags or {}).items():
        if value is not None:
            set_dotted(merged, key.split("."), value)
    for text in overrides:
        path, value = parse_override(text)
        set_dotted(merged, path, value)
    return merged


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _with_section_defaults(schema: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Fill each section the user only partly wrote from the stage's own defaults.

    Without this, ``train: {lr: 1e-4}`` would replace the whole stage-specific ``train`` default
    (its weight decay, betas, schedule) with the generic one.
    """
    merged = dict(data)
    for name, info in schema.model_fields.items():
        given = merged.get(name)
        if not isinstance(given, dict):
            continue
        default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            base = default.model_dump(exclude_unset=True)  # the stage's own defaults; the rest are the class's
            merged[name] = {**base, **given}
    return merged


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names valid at the parent of ``loc`` (for 'did you mean' suggestions)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            return []
        info = current.model_fields.get(part)
        if info is None:
            return []
        annotation = info.annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(current.model_fields) if current is not None else []


def _origin(loc: tuple, source: str, overrides: list[str]) -> str:
    """Name the ``key=value`` override a bad key came from, else the recipe file (or command line)."""
    key = tuple(str(p) for p in loc)
    for text in reversed(overrides):  # the last override of a key is the one that counts
        path = tuple(parse_override(text)[0])
        n = min(len(path), len(key))
        if key and path[:n] == key[:n]:  # the override set this key, or a key inside it
            return f"override '{text}'"
    return source


def format_errors(err: ValidationError, schema: type[BaseModel], source: str,
                  overrides: list[str] | None = None) -> list[str]:
    lines = []
    for item in err.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        source_of = _origin(loc, source, overrides or [])
        if item["type"] == "extra_forbidden":
            known = _fields_at(schema, loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys here: {', '.join(known)}"
            lines.append(f"{source_of}: unknown key '{key}'{hint}")
        elif item["type"] == "missing":
            lines.append(f"{source_of}: missing required key '{key}'")
        elif not loc and item["type"] == "value_error":  # a rule across several keys: its message names them
            lines += [f"{source}: {line}" for line in item["msg"].removeprefix("Value error, ").splitlines()]
        else:
            got = item.get("input")
            shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
            lines.append(f"{source_of}: '{key}' = {shown}: {item['msg'].removeprefix('Value error, ')}")
    return lines


def validate_recipe(data: dict[str, Any], source: str, stage: str | None = None,
                    overrides: list[str] | None = None) -> Strict:
    """Validate a recipe dict for ``stage`` (or its own ``stage`` key); all errors at once, each
    naming where the bad key came from: ``source`` or the ``key=value`` override that set it."""
    declared = data.get("stage")
    stage = stage or declared
    if stage is None:
        raise UserError(f"{source}: missing key 'stage' (one of {', '.join(RECIPE_TYPES)})")
    if stage not in RECIPE_TYPES:
        close = difflib.get_close_matches(str(stage), list(RECIPE_TYPES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"{source}: 'stage' = {stage!r} is not one of {', '.join(RECIPE_TYPES)}{hint}")
    if declared is not None and declared != stage and {declared, stage} != {"warmup", "transfer"}:
        raise UserError(f"{source} is a '{declared}' recipe; this command needs a '{stage}' recipe")
    schema = RECIPE_TYPES[stage]
    try:
        return schema.model_validate(_with_section_defaults(schema, {**data, "stage": stage}))
    except ValidationError as err:
        raise UserError("\n".join(format_errors(err, schema, source, overrides))) from None


def load_recipe(
    path: Path | None,
    stage: str,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> Strict:
    """Recipe file (optional) + flags + overrides, validated for ``stage``."""
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "command line"
    merged = apply_overrides(data, overrides or [], flags)
    return validate_recipe(merged, source, stage, overrides)
