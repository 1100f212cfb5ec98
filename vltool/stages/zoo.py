"""``vltool zoo list``: what every alias resolves to. (``zoo build`` is the demo world's: vltool.demo.build.)"""

from __future__ import annotations

from typing import Any

from vltool.sources.aliases import alias_path, all_aliases


def list_rows() -> list[list[Any]]:
    """(alias, role, hub id or 'demo world', local path, present) for every alias."""
    rows = []
    for alias in all_aliases():
        path = alias_path(alias)
        rows.append([alias.name, alias.role, alias.hub_id or "demo world (vltool zoo build)",
                     str(path) if path else "-", path is not None])
    return rows
