"""ScienceQA scoring as LaVIN reports it, minus its random fallback.

The answer letter is parsed from "The answer is X."; an unparsable or out-of-range answer counts
WRONG (LaVIN's script picks a random option instead) and their number is reported as
``unparsed``. Categories follow ScienceQA: TXT has a text context, IMG an image, NO neither (a
question with both counts in TXT and IMG).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vltool.data.sample import Sample

ANSWER = re.compile(r"The answer is ([A-Z])\.?")


def parse_choice(text: str, n_choices: int) -> int | None:
    match = ANSWER.search(text)
    if not match:
        return None
    index = ord(match.group(1)) - ord("A")
    return index if 0 <= index < n_choices else None


def scienceqa_scores(predictions: Sequence[str], samples: Sequence[Sample]) -> dict[str, float]:
    groups: dict[str, list[bool]] = {k: [] for k in ("TXT", "IMG", "NO")}
    correct, unparsed = [], 0
    for text, sample in zip(predictions, samples):
        choice = parse_choice(text, len(sample.meta["choices"]))
        unparsed += choice is None
        ok = choice == sample.meta["answer_index"]
        correct.append(ok)
        has_hint, has_image = sample.meta.get("has_hint", False), sample.meta.get("has_image", False)
        if has_hint:
            groups["TXT"].append(ok)
        if has_image:
            groups["IMG"].append(ok)
        if not has_hint and not has_image:
            groups["NO"].append(ok)
    out = {"accuracy": 100.0 * sum(correct) / max(1, len(correct)), "unparsed": float(unparsed)}
    out.update({k: 100.0 * sum(v) / len(v) for k, v in groups.items() if v})
    return out
