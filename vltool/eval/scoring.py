"""One entry point from (dataset, samples, predictions) to that benchmark's own metrics.

Each data kind belongs to a metric family, and the family decides the numbers, on the scale
papers report:

* ``caption`` (``coco``, ``demo:caption``): BLEU-4, CIDEr, ROUGE_L x100 (+ METEOR for real COCO
  when Java runs), and for the demo world its attribute accuracies;
* ``vqa`` (``vqav2``, ``demo:vqa``): ``vqa_accuracy`` (official, when there are >= 3 human
  answers a question) and ``exact_match``;
* ``sqa`` (``scienceqa``, ``demo:sqa``): ScienceQA accuracy, its categories and ``unparsed``;
* ``text`` (``alpaca``, ``jsonl``, ``llava``, ``demo:text``): ``exact_match``, and
  ``perplexity`` when per-sample NLL sums and token counts are given.

Each data kind names its family where it is registered (``vltool.data.specs.register_kind``);
plugins add caption metrics with ``register_caption_metric``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from vltool.data.sample import Sample
from vltool.data.specs import FAMILIES, family_of, known_kinds
from vltool.errors import UserError
from vltool.eval.caption_metric import caption_metrics, java_available
from vltool.eval.predictions import align
from vltool.eval.scienceqa_metric import scienceqa_scores
from vltool.eval.text_metric import exact_match, perplexity
from vltool.eval.vqa_metric import vqa_scores
from vltool.plugins import load_plugins

CaptionMetric = Callable[[Sequence[str], Sequence[Sample]], dict[str, float]]
CAPTION_METRICS: list[CaptionMetric] = []


def register_caption_metric(fn: CaptionMetric) -> None:
    """Add numbers to every caption score: ``fn(texts, samples)`` returns {} where it does not apply
    (the demo world adds its attribute accuracies this way)."""
    if fn not in CAPTION_METRICS:
        CAPTION_METRICS.append(fn)


def metric_family(dataset: str) -> str:
    """caption | vqa | sqa | text, from a spec (``demo:sqa``), a kind (``coco``) or a family."""
    if dataset in FAMILIES:
        return dataset
    kind, _, arg = dataset.partition(":")
    family = family_of(kind, arg)
    if family is None:
        raise UserError(f"no metric for data kind {kind!r}; known kinds: {', '.join(known_kinds())}")
    return family


def score(dataset: str, samples: Sequence[Sample], predictions: Mapping[str, str] | Sequence[str],
          nll: Mapping[str, tuple[float, int]] | Sequence[tuple[float, int]] | None = None,
          meteor: bool | None = None) -> dict[str, float]:
    """The metrics of ``dataset`` (a spec, kind or family) for these samples.

    ``predictions``: id -> text (checked: every sample needs one and no unknown ids), or a list
    aligned with ``samples``. ``nll``: the same shapes of (summed answer NLL, answer tokens) for
    perplexity. ``meteor``: None = on for real COCO when Java runs, off otherwise (it costs
    ~10 s and 2 GB of Java heap, too much for the demo world's frequent evaluations).
    """
    if not samples:
        raise UserError(f"{dataset}: nothing to score (no samples)")
    family = metric_family(dataset)
    if isinstance(predictions, Mapping):
        texts = align(samples, {str(k): v for k, v in predictions.items()}, dataset=dataset)
    else:
        texts = list(predictions)
    if len(texts) != len(samples):
        raise ValueError(f"{len(texts)} predictions for {len(samples)} samples")
    refs = [s.references or ([s.answer] if s.answer else []) for s in samples]
    if family != "sqa" and not all(refs):
        lacking = [s.id for s, r in zip(samples, refs) if not r]
        raise UserError(f"{dataset}: {len(lacking)} samples have no reference answer to score against "
                        f"(e.g. {', '.join(lacking[:3])}); pass the annotations file too")
    if family == "caption":
        if meteor is None:
            meteor = dataset.partition(":")[0] == "coco" and java_available()
        out = caption_metrics(texts, refs, meteor=meteor)
        load_plugins()
        for extra in CAPTION_METRICS:
            out.update(extra(texts, list(samples)))
        return out
    if family == "sqa":
        if not all({"choices", "answer_index"} <= s.meta.keys() for s in samples):
            raise UserError(f"{dataset}: ScienceQA scoring needs each sample's choices and answer index "
                            f"(read the data with scienceqa:DIR)")
        return scienceqa_scores(texts, samples)
    if family == "vqa":
        return vqa_scores(texts, refs, [s.meta.get("answer_type") for s in samples])
    out = {"exact_match": exact_match(texts, refs)}
    if nll is not None:
        if isinstance(nll, Mapping):
            by_id = {str(k): v for k, v in nll.items()}
            pairs = [by_id[s.id] for s in samples if s.id in by_id]
        else:
            pairs = list(nll)
        if len(pairs) != len(samples):
            raise UserError(f"{dataset}: NLL for {len(pairs)} of {len(samples)} samples; perplexity needs all")
        out["perplexity"] = perplexity([p[0] for p in pairs], [p[1] for p in pairs])
    return out
