"""Which numbers in a metrics dict are scores, and which only describe how they were computed.

Scorers return one flat dict of floats so that ``metrics.jsonl``, manifests and ``eval.json``
keep everything in one place. A few entries are not scores but facts about the scoring:
``ptb_tokenizer`` (1.0 when the COCO toolkit's Java PTB tokenizer ran, 0.0 for the stand-in,
see ``caption_metric``) says whether BLEU / CIDEr are comparable with papers. Printed among
the scores it reads like a metric ("ptb_tokenizer 1"), so progress lines, tables, reports and
experiment trackers ask here and show such fields apart (or as a sentence).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# field -> what its value means, for the sentence shown instead of a number
NOT_METRICS: dict[str, dict[float, str]] = {
    "ptb_tokenizer": {1.0: "captions tokenised by the COCO toolkit's PTB tokenizer (Java)",
                      0.0: "captions tokenised by the stand-in (no Java): BLEU/CIDEr close to, not equal to, "
                           "the COCO toolkit's"},
}


def base_name(key: str) -> str:
    """``demo:caption/final_ptb_tokenizer`` -> ``ptb_tokenizer``: the field a (prefixed) key names."""
    return key.rsplit("/", 1)[-1].removeprefix("final_")


def is_metric(key: str) -> bool:
    return base_name(key) not in NOT_METRICS


def split_metrics(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(scores, descriptive fields) of a metrics dict, each in its original order."""
    scores = {k: v for k, v in values.items() if is_metric(k)}
    return scores, {k: v for k, v in values.items() if not is_metric(k)}


def describe(key: str, value: Any) -> str:
    """A descriptive field as words (``ptb_tokenizer 0.0`` -> what that means)."""
    meanings = NOT_METRICS.get(base_name(key), {})
    try:
        return meanings.get(float(value), f"{key} {value}")
    except (TypeError, ValueError):
        return f"{key} {value}"
