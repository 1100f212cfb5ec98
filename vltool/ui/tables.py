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


def short_names(specs: Sequence[str]) -> list[str]:
    """Column headers for model specs: a path's last part, unless that would make two columns alike."""
    tails = [spec.rstrip("/").rsplit("/", 1)[-1] or spec for spec in specs]
    return tails if len(set(tails)) == len(tails) else list(specs)


def metrics_table(title: str, metrics_by_column: Mapping[str, Mapping[str, Any]]) -> Table:
    """One row per metric, one column per model (or per dataset); paths are shown by their last part."""
    columns = list(metrics_by_column)
    names: list[str] = []
    for metrics in metrics_by_column.values():
        names += [k for k in metrics if k not in names]
    rows = [[name, *(metrics_by_column[c].get(name, "-") for c in columns)] for name in names]
    return rows_table(title, ["metric", *short_names(columns)], rows)


def demo_summary_table(report: Mapping[str, Any]) -> Table:
    """The demo's headline numbers beside the papers' (the same figures as report.md)."""
    v, m, merge = report["vpgtrans"], report["mma"], report["merge"]
    pct = lambda x: "n/a" if x is None else f"{x:.3g}%"
    speedup = "never reached" if v.get("speedup") is None else (
        f"{v['speedup']:.2f}x ({v['steps_transfer']} vs {v['steps_scratch']} steps)")
    rows = [
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
    return rows_table(f"vltool demo ({report.get('profile', 'full')} profile)", ["claim", "this run", "paper"], rows)
