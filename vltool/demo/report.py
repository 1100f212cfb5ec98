"""The demo report: ``report.json`` (numbers), ``report.md`` (what they mean) and PNG plots.

Pure file writing from plain dicts, so the numbers in the report are exactly the ones the
stages measured; the paper's figures are printed beside them, never mixed into them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAPER = {
    "vpgtrans.speedup": "3.3x-10x on small OPT pairs (COCO CIDEr); 10.7x OPT-2.7B -> 6.7B",
    "converter": "OPT125M->1.3B epoch-1 CIDEr 130.2 with converter init vs 126.1 without",
    "mma.trainable_params": "3.78M for LaVIN-7B (0.05% of 7B)",
    "mma.sqa_accuracy_after": "LaVIN-7B 89.41% on ScienceQA test",
    "merge": "the merged folder must reproduce vltool's own forward (tests require <= 1e-4 in fp32)",
    "mma.text": "LaVIN: routing keeps text-only ability (mixture-of-modality training)",
}


def plot_curves(path: Path, curves: dict[str, list[tuple[int, float]]], metric: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for label, points in curves.items():
        if points:
            ax.plot([s for s, _ in points], [v for _, v in points], marker="o", ms=3, label=label)
    ax.set_xlabel("optimizer steps (warm-up included)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_bars(path: Path, groups: dict[str, dict[str, float | None]], ylabel: str, title: str) -> Path:
    """Grouped bars: one group per stage, one bar per measure (a missing measure leaves a gap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = list(dict.fromkeys(m for values in groups.values() for m in values))
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    width = 0.8 / max(1, len(measures))
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=110)
    for k, measure in enumerate(measures):
        xs = [i + (k - (len(measures) - 1) / 2) * width for i in range(len(groups))]
        ys = [values.get(measure) for values in groups.values()]
        kept = [(x, y) for x, y in zip(xs, ys) if y is not None]
        ax.bar([x for x, _ in kept], [y for _, y in kept], width, label=measure, color=colours[k % len(colours)])
        for x, y in kept:
            ax.text(x, y, f"{y:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_json(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    return path
