"""Text-only scores: exact match (in percent) and perplexity of the reference answers.

Exact match compares after a light normalisation (lower case, punctuation to spaces, articles
a/an/the dropped, whitespace collapsed), so "The Red circle." matches "red circle" but "red"
does not match "red circle". Perplexity is corpus-level: exp(total NLL / total answer tokens),
weighting every token equally as language-model papers do, not a mean of per-sample
perplexities (which one short, badly predicted answer would dominate). The NLL sums and token
counts come from the model (the eval stage's forward pass over prompt + answer, answer tokens
only); this module only aggregates them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", _PUNCT.sub(" ", text.lower())).split())


def exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Percent of predictions equal, after ``normalize``, to one of their references."""
    hits = sum(normalize(p) in {normalize(r) for r in refs} for p, refs in zip(predictions, references, strict=True))
    return 100.0 * hits / max(1, len(predictions))


def perplexity(nll_sums: Sequence[float], token_counts: Sequence[int]) -> float:
    """exp(sum of per-sample summed NLL (nats) / sum of their answer-token counts)."""
    tokens = sum(token_counts)
    if len(nll_sums) != len(token_counts):
        raise ValueError("one NLL sum and one token count per sample")
    if tokens <= 0:
        raise ValueError("perplexity needs at least one answer token")
    mean = sum(nll_sums) / tokens
    return math.exp(mean) if mean < 700 else math.inf  # a diverged model: inf, not OverflowError
