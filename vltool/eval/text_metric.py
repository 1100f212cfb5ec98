"""Exact match after light normalisation (case, punctuation, articles, whitespace), in %."""

from __future__ import annotations

import re
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    hits = sum(normalize(p) in {normalize(r) for r in refs} for p, refs in zip(predictions, references))
    return 100.0 * hits / max(1, len(predictions))
