"""Tables for what commands return (CLI side only); the data comes as plain dicts and lists.

On a terminal a table is a Rich table. Into a pipe or a file it is plain text that scripts can
use: a ``# title`` line, then one line per row with the cells separated by tabs, each cell whole
(never wrapped or cut at the terminal width, no ANSI codes), so ``vltool zoo list | grep ID``
and ``cut -f2`` work. Machine-readable output proper is each command's ``--json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from vltool.eval.metric_fields import describe, split_metrics

Row = Sequence[Any]


def fmt_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def rows_table(title: str, columns: Sequence[str], rows: Sequence[Row]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(fmt_value(v) for v in row))
    return table


def plain_lines(title: str, columns: Sequence[str], rows: Sequence[Row]) -> list[str]:
    """The pipe form of a table: ``# title``, the header, then one tab-separated line per row."""
    cell = lambda v: " ".join(fmt_value(v).split())  # a tab or newline inside a cell would split it
    return [f"# {title}", "\t".join(columns)] + ["\t".join(cell(v) for v in row) for row in rows]


def show_rows(console: Console, title: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
    """Print a table: Rich on a terminal, tab-separated whole lines into a pipe or a file."""
    if console.is_terminal:
        console.print(rows_table(title, columns, rows))
    else:
        _write_lines(console, plain_lines(title, columns, rows))


def show_groups(console: Console, title: str, groups: Mapping[str, Mapping[str, Any]]) -> None:
    """A two-column table in named groups (result, metrics, data, ...), one Rich section each;
    into a pipe, ``group<TAB>key<TAB>value`` lines."""
    groups = {name: rows for name, rows in groups.items() if rows}
    if not console.is_terminal:
        rows = [[group, key, value] for group, items in groups.items() for key, value in items.items()]
        _write_lines(console, plain_lines(title, ["group", "key", "value"], rows))
        return
    table = Table(title=title, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    table.add_column("value", justify="right", overflow="fold")
    for name, items in groups.items():
        for i, (key, value) in enumerate(items.items()):
            table.add_row(name if i == 0 else "", key, fmt_value(value))
        table.add_section()
    console.print(table)


def _write_lines(console: Console, lines: list[str]) -> None:
    # Straight to the stream: Console.print would wrap at COLUMNS (80 when it is not a terminal).
    console.file.write("".join(line + "\n" for line in lines))
    console.file.flush()


def short_names(specs: Sequence[str]) -> list[str]:
    """Column headers for model specs: a path's last part, unless that would make two columns alike."""
    tails = [spec.rstrip("/").rsplit("/", 1)[-1] or spec for spec in specs]
    return tails if len(set(tails)) == len(tails) else list(specs)


def metrics_rows(metrics_by_column: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[Any]], list[str]]:
    """(columns, rows, notes) of a metrics table: one row per metric, one column per model (or
    dataset); fields that describe the scoring (``ptb_tokenizer``) become notes, not rows."""

    columns = list(metrics_by_column)
    names: list[str] = []
    notes: list[str] = []
    for column, values in metrics_by_column.items():
        scores, fields = split_metrics(values)
        names += [k for k in scores if k not in names]
        for key, value in fields.items():
            note = describe(key, value) + (f" ({short_names(columns)[columns.index(column)]})" if len(columns) > 1 else "")
            notes.append(note)
    rows = [[name, *(metrics_by_column[c].get(name, "-") for c in columns)] for name in names]
    return ["metric", *short_names(columns)], rows, list(dict.fromkeys(notes))


def show_metrics(console: Console, title: str, metrics_by_column: Mapping[str, Mapping[str, Any]]) -> None:
    columns, rows, notes = metrics_rows(metrics_by_column)
    show_rows(console, title, columns, rows)
    for note in notes:
        console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)


def demo_summary_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """The demo's headline numbers beside the papers' (the same figures as report.md)."""
    v, m, merge = report["vpgtrans"], report["mma"], report["merge"]
    pct = lambda x: "n/a" if x is None else f"{x:.3g}%"
    speedup = "never reached" if v.get("speedup") is None else (
        f"{v['speedup']:.2f}x ({v['steps_transfer']} vs {v['steps_scratch']} steps)")
    return [
        ["VPGTrans speed-up (caption attribute acc., warm-up counted)", speedup,
         "3-10x small OPT pairs; 10.7x OPT-2.7B->6.7B"],
        ["MMA trainable / total parameters",
         f"{m['trainable_params']:,} / {m['total_params']:,} ({m['trainable_share_pct']:.2f}%)", "3.78M (LaVIN-7B)"],
        ["ScienceQA-style accuracy before -> after tune-mma",
         f"{pct(m['sqa_accuracy_before'])} -> {pct(m['sqa_accuracy_after'])}", "89.41% (LaVIN-7B, real ScienceQA)"],
        ["text-only exact match: before / router / shared adapter",
         f"{pct(m['text_exact_match_before'])} / {pct(m['text_exact_match_after_router'])} / "
         f"{pct(m['text_exact_match_after_shared_adapter'])}", "routing keeps text-only ability"],
        ["merge: max |logit| difference", f"{merge['max_logit_diff']:.1e}", "exact (re-parameterisation)"],
        ["wall time", f"{report['timings_s']['total']:.0f} s", ""],
    ]


def show_demo_summary(console: Console, report: Mapping[str, Any]) -> None:
    show_rows(console, f"vltool demo ({report.get('profile', 'full')} profile)", ["claim", "this run", "paper"],
              demo_summary_rows(report))
