"""Caption metrics (BLEU-4, CIDEr, ROUGE_L and, on request, METEOR; x100) with pycocoevalcap's scorers.

Numbers comparable with papers need the COCO toolkit's own tokenisation: Stanford's PTB
tokenizer (lower-cased, punctuation tokens dropped), which is Java. When ``java`` runs, the
jar shipped inside pycocoevalcap is called directly, fed through stdin (pycocoevalcap's wrapper
writes a temporary file into site-packages, which fails on read-only installs). When it cannot
run, captions are tokenised by a documented stand-in: lower case, every non-word character
becomes a space. That matches PTB on plain English captions but splits contractions
differently ("aren't" -> "aren t", PTB: "are n't"), so the result says which was used:
``ptb_tokenizer`` is 1.0 for PTB and 0.0 for the stand-in. METEOR (also Java) needs ~2 GB and
~10 s to start, so it is opt-in; SPICE is never run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

# PTB tokens the COCO toolkit drops after tokenising.
PTB_PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
                   "...", ";"}
_NON_WORD = re.compile(r"[^\w\s]")


def java_available() -> bool:
    return shutil.which("java") is not None


def simple_tokenize(text: str) -> str:
    """The stand-in tokenizer: lower case, punctuation to spaces, whitespace collapsed."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def _ptb_jar() -> Path | None:
    try:
        import pycocoevalcap
    except ImportError:
        return None
    for root in pycocoevalcap.__path__:
        jar = Path(root) / "tokenizer" / "stanford-corenlp-3.4.1.jar"
        if jar.is_file():
            return jar
    return None


def ptb_tokenize(texts: Sequence[str]) -> list[str] | None:
    """PTB-tokenised, lower-cased texts without punctuation tokens; None if Java cannot do it."""
    if not texts:
        return []
    jar = _ptb_jar()
    if jar is None or not java_available():
        return None
    lines = "".join(" ".join(t.split()) + "\n" for t in texts)  # one caption a line, whatever it held
    command = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
               "-encoding", "utf-8"]
    try:
        done = subprocess.run(command, input=lines.encode("utf-8"), capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout.decode("utf-8").split("\n")
    if out and out[-1] == "":
        out.pop()
    if done.returncode != 0 or len(out) != len(texts):  # never guess an alignment
        return None
    return [" ".join(w for w in line.split() if w not in PTB_PUNCTUATION) for line in out]


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float | None:
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        scorer = Meteor()
        try:
            return float(scorer.compute_score(gts, res)[0])
        finally:
            scorer.meteor_p.kill()  # its __del__ would also do it, at some unknown later time
    except (OSError, ValueError, BrokenPipeError):
        return None


def caption_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]], meteor: bool = False,
                    tokenizer: str = "auto") -> dict[str, float]:
    """Corpus scores x100 for aligned predictions / reference lists.

    ``tokenizer``: ``auto`` (PTB when Java runs, else the stand-in), ``ptb`` or ``simple``.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(predictions) != len(references) or not predictions:
        raise ValueError("one list of references per prediction, and at least one prediction")
    flat = list(predictions) + [r for refs in references for r in refs]
    tokens = ptb_tokenize(flat) if tokenizer in ("auto", "ptb") else None
    if tokens is None and tokenizer == "ptb":
        raise RuntimeError("the PTB tokenizer needs a working `java` and pycocoevalcap's CoreNLP jar")
    used_ptb = tokens is not None
    if tokens is None:
        tokens = [simple_tokenize(t) for t in flat]
    n = len(predictions)
    # an empty hypothesis would trip the scorers' sanity checks; a token no reference has scores 0
    res = {i: [tokens[i] or "<empty>"] for i in range(n)}
    gts, k = {}, n
    for i, refs in enumerate(references):
        gts[i] = [t or "<empty>" for t in tokens[k:k + len(refs)]]
        k += len(refs)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    out = {"BLEU-4": 100.0 * bleu[3], "CIDEr": 100.0 * float(cider), "ROUGE_L": 100.0 * float(rouge)}
    if meteor:
        value = _meteor(gts, res) if java_available() else None
        if value is not None:
            out["METEOR"] = 100.0 * value
    out["ptb_tokenizer"] = 1.0 if used_ptb else 0.0
    return out
