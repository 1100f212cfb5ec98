"""The one record every reader produces and every stage / metric consumes.

Readers for real formats (COCO Karpathy, VQAv2, ScienceQA, LLaVA, Alpaca, JSONL) and the demo
world all turn their rows into ``Sample`` so that training, generation and scoring never care
where a sample came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """One training / evaluation example.

    id: the id predictions are matched on (COCO image id, VQA question_id, ScienceQA qid, ...).
    image: a path to an image file, or None for a text-only sample.
    prompt: the text the model is conditioned on (already formatted for the dataset).
    answer: the training target / reference the loss is computed on ("" when unknown).
    references: every reference for scoring (captions, the 10 VQA answers); defaults to [answer].
    meta: dataset-specific fields scoring needs (ScienceQA choices/subject/grade, ...).
    """

    id: str
    image: Any | None
    prompt: str
    answer: str
    references: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_image(self) -> bool:
        return self.image is not None
