"""``vltool zoo list`` and ``vltool zoo build``: what aliases resolve to; building the demo world."""

from __future__ import annotations

from typing import Any

from vltool.sources.aliases import alias_path, all_aliases
from vltool.training.progress import Reporter


def list_rows() -> list[list[Any]]:
    """(alias, role, hub id or 'demo world', local path, present) for every alias."""
    rows = []
    for alias in all_aliases():
        path = alias_path(alias)
        rows.append([alias.name, alias.role, alias.hub_id or "demo world (vltool zoo build)",
                     str(path) if path else "-", path is not None])
    return rows


def build(seed: int = 0, force: bool = False, quick: bool = False, only: list[str] | None = None,
          reporter: Reporter | None = None) -> dict[str, Any]:
    """Build the demo world (or only some of its models) and summarise each item's quality and build time."""
    from vltool.demo.build import build_world

    summary = build_world(seed=seed, force=force, reporter=reporter, quick=quick, only=only)
    rows: list[list[Any]] = [["folder", summary["root"]]]
    for name, info in summary["items"].items():
        metrics = info.get("metrics", {})
        shown = ", ".join(f"{k} {v:.3g}" for k, v in metrics.items()) if metrics else ""
        extra = {k: v for k, v in info.items() if k not in ("item", "metrics", "build_s", "build_cpu_s")}
        rows.append([name, f"{info.get('build_s', 0):.1f} s  {shown}  {extra or ''}".strip()])
    # Items build on parallel workers, so the wall time is the summary's, not the items' sum.
    rows.append(["world build time", f"{summary.get('build_s', 0.0):.1f} s wall, "
                                     f"{summary.get('build_cpu_s', 0.0):.1f} s CPU"])
    return {"rows": rows, "summary": summary}
