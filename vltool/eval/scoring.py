"""One entry point from (dataset kind, samples, predictions) to that benchmark's own metrics."""

from __future__ import annotations

from collections.abc import Sequence

from vltool.data.sample import Sample
from vltool.eval.caption_metric import caption_metrics
from vltool.eval.scienceqa_metric import scienceqa_scores
from vltool.eval.text_metric import exact_match


def metric_family(spec: str) -> str:
    """caption | vqa | sqa | text, from a data spec such as ``demo:sqa`` or ``coco:test.json``."""
    kind, _, arg = spec.partition(":")
    if kind == "demo":
        return {"caption": "caption", "vqa": "vqa", "sqa": "sqa", "text": "text"}.get(arg, "text")
    return {"coco": "caption", "vqav2": "vqa", "scienceqa": "sqa"}.get(kind, "text")


def score(family: str, samples: Sequence[Sample], predictions: Sequence[str]) -> dict[str, float]:
    refs = [s.references or [s.answer] for s in samples]
    if family == "caption":
        out = caption_metrics(predictions, refs)
        if all("attributes" in s.meta for s in samples):
            from vltool.demo.datasets import caption_scores

            out.update(caption_scores(list(predictions), list(samples)))
        return out
    if family == "sqa":
        return scienceqa_scores(predictions, samples)
    if family == "vqa":
        return {"accuracy": exact_match(predictions, refs)}
    return {"exact_match": exact_match(predictions, refs)}
