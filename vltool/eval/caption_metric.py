"""Caption metrics (BLEU-4, CIDEr, ROUGE_L, x100) with pycocoevalcap's own scorers.

pycocoevalcap's PTB tokenizer needs Java; captions are tokenised here instead by lower-casing and
splitting off punctuation (close to PTB for English captions), so the metrics run anywhere and
the same way on every machine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_PUNCT = re.compile(r"[^\w\s]")


def tokenize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def caption_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res = {i: [tokenize(p) or "empty"] for i, p in enumerate(predictions)}
    gts = {i: [tokenize(r) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    return {"BLEU-4": 100.0 * bleu[3], "CIDEr": 100.0 * cider, "ROUGE_L": 100.0 * rouge}
