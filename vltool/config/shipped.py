"""Finding the recipes that ship with vltool (``vltool recipes list|show|copy``).

They live in the repository's top-level ``recipes/`` folder; a wheel installs the same files
under ``<prefix>/share/vltool/recipes``. ``VLTOOL_RECIPES`` points elsewhere for a team's own
collection.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vltool.config.loader import load_recipe
from vltool.errors import UserError


def recipes_root() -> Path:
    candidates = []
    if os.environ.get("VLTOOL_RECIPES"):
        candidates.append(Path(os.environ["VLTOOL_RECIPES"]))
    candidates.append(Path(__file__).resolve().parents[2] / "recipes")
    candidates.append(Path(sys.prefix) / "share" / "vltool" / "recipes")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise UserError("cannot find the shipped recipes; set VLTOOL_RECIPES to a folder of recipe files")


def list_recipes() -> list[tuple[str, Path]]:
    """(name, path) of every shipped recipe: the path below the root without ``.yaml``."""
    root = recipes_root()
    return [(str(p.relative_to(root).with_suffix("")), p) for p in sorted(root.rglob("*.yaml"))]


def find_recipe(name: str) -> Path:
    """A shipped recipe by name (``vpgtrans/opt2.7b-to-opt6.7b``) or a path to any file."""
    as_path = Path(name)
    if as_path.is_file():
        return as_path
    known = dict(list_recipes())
    key = name.removesuffix(".yaml")
    if key in known:
        return known[key]
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else "; see 'vltool recipes list'"
    raise UserError(f"no recipe named {name!r}{hint}")


def load_named_recipe(name: str | None, stage: str, overrides: list[str] | None = None,
                      flags: dict | None = None):
    """A recipe as every command loads it: the shipped name or path (none: the stage defaults),
    then the flags, then ``key=value`` overrides."""

    return load_recipe(find_recipe(name) if name else None, stage, overrides or [], flags or {})
