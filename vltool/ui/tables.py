"""Rich tables for what commands return (CLI side only); the data comes as plain dicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table


def fmt_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def rows_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(fmt_value(v) for v in row))
    return table


def metrics_table(title: str, metrics_by_column: Mapping[str, Mapping[str, Any]]) -> Table:
    """One row per metric, one column per model (or per dataset)."""
    columns = list(metrics_by_column)
    names: list[str] = []
    for metrics in metrics_by_column.values():
        names += [k for k in metrics if k not in names]
    rows = [[name, *(metrics_by_column[c].get(name, "-") for c in columns)] for name in names]
    return rows_table(title, ["metric", *columns], rows)
