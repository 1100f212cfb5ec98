"""VQAv2 accuracy as the official evaluation defines it, on the 0-100 scale papers report.

An answer's accuracy against the ten human answers is ``min(#humans who gave it / 3, 1)``,
averaged over the ten leave-one-out subsets of nine humans (so 2 matching humans score 0.6, not
2/3). Answers are normalised first as the official script does: newlines/tabs to spaces;
punctuation removed (joined when it touches a space or the text has a digit-comma-digit, else
replaced by a space); a period dropped unless a digit follows it; lower case; number words
zero..ten to digits; articles a/an/the dropped; apostrophe-less contractions repaired
(``dont`` -> ``don't``).

Two documented departures, both of which only make the score less sensitive to formatting:
the official script skips normalising the prediction when all ten humans agree (so ``Yes.``
scores 0 against ten ``yes``), and applies only the punctuation step to the human answers; here
both sides always get the full normalisation. The human answers in the official files are
already normalised, so scores of normalised predictions are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import product

_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBERS = {w: str(i) for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven",
                                             "eight", "nine", "ten"])}
_NUMBERS["none"] = "0"
_ARTICLES = {"a", "an", "the"}

# English contractions; their apostrophe-less spellings are repaired unless that spelling is an
# ordinary word of its own ("its", "well", "were", "hell", "shell", "ill", "id", "wed", "shed", "lets").
_CONTRACTIONS = [
    "ain't", "aren't", "can't", "could've", "couldn't", "couldn't've", "didn't", "doesn't", "don't",
    "hadn't", "hadn't've", "hasn't", "haven't", "he'd", "he'd've", "he'll", "he's", "how'd", "how'll",
    "how's", "i'd've", "i'm", "i've", "isn't", "it'd", "it'd've", "it'll", "let's", "ma'am", "mightn't",
    "mightn't've", "might've", "mustn't", "must've", "needn't", "not've", "o'clock", "oughtn't", "shan't",
    "she'd've", "she's", "should've", "shouldn't", "shouldn't've", "somebody'd", "somebody'd've",
    "somebody'll", "somebody's", "someone'd", "someone'd've", "someone'll", "someone's", "something'd",
    "something'd've", "something'll", "something's", "that's", "there'd", "there'd've", "there're",
    "there's", "they'd", "they'd've", "they'll", "they're", "they've", "'twas", "wasn't", "we'd've",
    "we're", "we've", "weren't", "what'll", "what're", "what's", "what've", "when's", "where'd", "where's",
    "where've", "who'd", "who'd've", "who'll", "who's", "who've", "why'll", "why're", "why's", "won't",
    "would've", "wouldn't", "wouldn't've", "y'all", "y'all'll", "y'all'd've", "you'd", "you'd've", "you'll",
    "you're", "you've"
]
_ORDINARY_WORDS = {"its", "well", "were", "hell", "shell", "ill", "id", "wed", "shed", "lets", "whore"}


def _contraction_map() -> dict[str, str]:
    """Every spelling with some apostrophes left out -> the proper contraction."""
    out: dict[str, str] = {}
    for word in _CONTRACTIONS:
        parts = word.split("'")
        for keep in product((True, False), repeat=len(parts) - 1):
            spelling = parts[0] + "".join(("'" if k else "") + p for k, p in zip(keep, parts[1:]))
            if spelling != word and spelling not in _ORDINARY_WORDS:
                out[spelling] = word
    return out


_REPAIR = _contraction_map()


def _punctuation(text: str) -> str:
    joined = _COMMA_NUMBER.search(text) is not None
    for p in _PUNCT:
        text = text.replace(p, "" if joined or f"{p} " in text or f" {p}" in text else " ")
    return _PERIOD.sub("", text)


def normalize_vqa_answer(text: str) -> str:
    """An answer in the form the official VQA evaluation compares."""
    text = _punctuation(text.replace("\n", " ").replace("\t", " ").strip())
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(_REPAIR.get(w, w) for w in words if w not in _ARTICLES)


def vqa_accuracy_one(prediction: str, humans: Sequence[str]) -> float:
    """0..1: ``min(matches / 3, 1)`` averaged over the leave-one-human-out subsets."""
    if not humans:
        raise ValueError("VQA accuracy needs the human answers")
    pred = normalize_vqa_answer(prediction)
    same = [normalize_vqa_answer(h) == pred for h in humans]
    total = sum(same)
    return sum(min(1.0, (total - left_out) / 3.0) for left_out in same) / len(same)


def vqa_accuracy(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean VQA accuracy in percent."""
    scores = [vqa_accuracy_one(p, refs) for p, refs in zip(predictions, references, strict=True)]
    return 100.0 * sum(scores) / max(1, len(scores))


def vqa_exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Percent of predictions equal (after VQA normalisation) to at least one reference."""
    hits = sum(normalize_vqa_answer(p) in {normalize_vqa_answer(r) for r in refs}
               for p, refs in zip(predictions, references, strict=True))
    return 100.0 * hits / max(1, len(predictions))


def vqa_scores(predictions: Sequence[str], references: Sequence[Sequence[str]],
               answer_types: Sequence[str | None] | None = None) -> dict[str, float]:
    """``vqa_accuracy`` (when every question has >= 3 human answers, as VQAv2's ten), per
    answer type (``yes/no``, ``number``, ``other``) when known, and ``exact_match`` always (the
    only meaningful number for single-reference VQA such as the demo world's)."""
    out: dict[str, float] = {}
    if references and all(len(r) >= 3 for r in references):
        out["vqa_accuracy"] = vqa_accuracy(predictions, references)
        if answer_types and all(answer_types):
            for kind in sorted(set(answer_types)):
                idx = [i for i, t in enumerate(answer_types) if t == kind]
                out[kind] = vqa_accuracy([predictions[i] for i in idx], [references[i] for i in idx])
    out["exact_match"] = vqa_exact_match(predictions, references)
    return out
