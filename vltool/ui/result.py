"""The end-of-run summary of an artifact, grouped so the numbers a user wants come first.

A stage's manifest keeps one flat ``metrics`` dict (about 35 entries after ``transfer``: data
counts, converter diagnostics, timings, flags and the final validation scores). Shown flat they
bury the answer, so they are sorted by their documented prefixes into groups, in this order:

- ``result``: where the artifact went, its kind, the optimizer steps taken, wall time (and, for
  tune-mma, the trainable / total parameter counts);
- ``metrics``: the final validation scores (``final_*``, tune-mma's ``after/*``; ``before/*`` last);
- ``data``: ``data_*`` counts; ``converter``: ``converter_*`` diagnostics;
- ``timing``: per-phase steps and seconds (``*_steps``, ``*_s``);
- ``other``: the rest (flags such as ``from_scratch``, ``end_of_text_id``, ``ptb_tokenizer``).

The same grouping is the ``--json`` object of every training command: the ``result`` entries at
the top level (``jq .steps``), each other group as an object (``jq .metrics.CIDEr``). Plain
data only, no Rich: the CLI renders it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vltool.eval.metric_fields import is_metric

GROUPS = ("result", "metrics", "data", "converter", "timing", "other")
HEADLINE = ("trainable_params", "total_params")


def group_manifest(path: str, manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{group: {key: value}} of an artifact's manifest, in ``GROUPS`` order, most useful rows first."""

    metrics = {k: v for k, v in (manifest.get("metrics") or {}).items() if not isinstance(v, dict)}
    groups: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
    result = groups["result"]
    result["artifact"] = path
    result["kind"] = manifest.get("kind")
    steps = metrics.get("steps_total", metrics.get("steps"))
    if steps is not None:
        result["steps"] = steps
    for key in HEADLINE:
        if key in metrics:
            result[key] = metrics[key]
    if manifest.get("wall_time_s") is not None:
        result["wall_time_s"] = manifest["wall_time_s"]
    before: dict[str, Any] = {}
    for key, value in metrics.items():
        if key in ("steps_total", "steps", *HEADLINE):
            continue
        if key.startswith(("final_", "after/")) and is_metric(key):
            groups["metrics"][key.removeprefix("final_").removeprefix("after/")] = value
        elif key.startswith("before/") and is_metric(key):
            before[key] = value
        elif key.startswith("data_"):
            groups["data"][key.removeprefix("data_")] = value
        elif key in ("image_samples", "text_only_samples"):
            groups["data"][key] = value
        elif key.startswith("converter_"):
            groups["converter"][key.removeprefix("converter_")] = value
        elif key.endswith(("_steps", "_s")):
            groups["timing"][key] = value
        else:
            name = key.removeprefix("final_").removeprefix("after/") if not is_metric(key) else key
            groups["other"][name] = value
    groups["metrics"].update(before)
    return groups


def as_json(groups: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``--json`` object: ``result`` entries at the top level, each other group nested."""
    out: dict[str, Any] = dict(groups.get("result", {}))
    out.update({name: dict(items) for name, items in groups.items() if name != "result"})
    return out
