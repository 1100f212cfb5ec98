"""Generate on one dataset with a predictor and score it: what ``vltool eval`` and in-training
validation both run, so the numbers in a run's ``metrics.jsonl`` are the ones ``vltool eval``
prints for the same model and samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vltool.data.sample import Sample
from vltool.eval.predictors import GenerationSettings, Predictor
from vltool.eval.scoring import metric_family, score

Shard = Callable[[Callable[[list], list]], list]


@dataclass
class DatasetResult:
    metrics: dict[str, float]
    texts: list[str]
    nll: list[tuple[float, int]] | None


def evaluate_dataset(predictor: Predictor, spec: str, samples: Sequence[Sample], settings: GenerationSettings,
                     shard: Shard | None = None, progress: Callable[[int], None] | None = None,
                     meteor: bool | None = None) -> DatasetResult:
    """Predictions, then the dataset's own metrics; text-only sets with answers add perplexity.

    ``shard(fn)`` runs ``fn`` over this process's share of the samples and gathers the results
    (``vltool eval`` under ``accelerate launch``); by default ``fn`` sees all of them.
    """
    samples = list(samples)
    run = shard or (lambda fn: fn(samples))
    texts = run(lambda part: predictor.generate(part, settings, progress=progress))
    nll = None
    if metric_family(spec) == "text" and all(s.image is None and s.answer for s in samples):
        nll = run(lambda part: predictor.answer_nll(part, settings.batch_size))  # perplexity of the references
    return DatasetResult(score(spec, samples, texts, nll=nll, meteor=meteor), texts, nll)
