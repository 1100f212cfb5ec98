"""ScienceQA accuracy and its categories as LaVIN and the ScienceQA paper report them, in percent.

The answer letter is read as LaVIN's ``eval.py`` reads it (github.com/luogen1996/LaVIN@dd0a1bf:
the first match of ``The answer is ([A-Z]).``, whose ``.`` is ANY character but a newline), so
numbers can be set beside the paper's: ``The answer is C, because`` and ``The answer is Copepod.``
read C; ``The answer is (A).``, ``The answer is C`` at the very end and ``The answer is B\nBECAUSE``
read nothing. LaVIN's script then picks a RANDOM option (``get_pred_idx``) when no letter was
found or the letter is beyond the question's options, which makes scores irreproducible; here
such an answer counts WRONG, deterministically, and their number is reported as ``unparsed``.
(LaVIN searches its decoded prompt + continuation; vltool the continuation: a question whose own
text holds the phrase is the only case where that differs.)

Categories follow ScienceQA's own evaluation: NAT / SOC / LAN by subject (natural / social /
language science); TXT = has a text hint, IMG = has an image, NO = neither (a question with both
counts in TXT and in IMG); G1-6 / G7-12 by grade (grade1..grade6, grade7..grade12). A category
with no questions in the scored set is left out rather than reported as 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vltool.data.sample import Sample

ANSWER = re.compile(r"The answer is ([A-Z]).")  # the pattern of LaVIN eval.py
SUBJECTS = {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}
LOWER_GRADES = {f"grade{i}" for i in range(1, 7)}
UPPER_GRADES = {f"grade{i}" for i in range(7, 13)}
CATEGORIES = ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12")


def parse_choice(text: str, n_choices: int) -> int | None:
    """The chosen option's index, or None when no in-range letter is stated."""
    match = ANSWER.search(text)
    if not match:
        return None
    index = ord(match.group(1)) - ord("A")
    return index if index < n_choices else None


def categories(meta: dict) -> list[str]:
    """The ScienceQA categories one question counts in."""
    out = [SUBJECTS[meta["subject"]]] if meta.get("subject") in SUBJECTS else []
    hint, image = bool(meta.get("has_hint")), bool(meta.get("has_image"))
    out += (["TXT"] if hint else []) + (["IMG"] if image else []) + ([] if hint or image else ["NO"])
    grade = meta.get("grade")
    out += ["G1-6"] if grade in LOWER_GRADES else ["G7-12"] if grade in UPPER_GRADES else []
    return out


def scienceqa_scores(predictions: Sequence[str], samples: Sequence[Sample]) -> dict[str, float]:
    """``accuracy``, the category accuracies and ``unparsed`` (a count) for aligned lists."""
    hits: dict[str, list[bool]] = {k: [] for k in CATEGORIES}
    correct, unparsed = 0, 0
    for text, sample in zip(predictions, samples, strict=True):
        choice = parse_choice(text, len(sample.meta["choices"]))
        unparsed += choice is None
        ok = choice is not None and choice == sample.meta["answer_index"]
        correct += ok
        for name in categories(sample.meta):
            hits[name].append(ok)
    out = {"accuracy": 100.0 * correct / max(1, len(samples))}
    out.update({k: 100.0 * sum(v) / len(v) for k, v in hits.items() if v})
    out["unparsed"] = float(unparsed)
    return out
