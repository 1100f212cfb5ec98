"""``scienceqa:DIR``: ScienceQA's ``problems.json`` + ``pid_splits.json`` (+ ``images/``), with
LaVIN's prompt and target.

``problems.json`` maps qid -> {question, choices, answer (index), hint, image ("image.png" or
null), subject, grade, lecture, solution, split, ...}; ``pid_splits.json`` maps a split name
(train, val, test, minival, ...) -> qids. Images are ``images/{problem's split}/{qid}/{image}``
(the problem's own split, so ``minival`` finds its images under ``val/``).

Prompt and target follow LaVIN's QCM-ALE format (its ``util/base_prompt.py``):
``Question: {q}\\nContext: {hint or N/A}\\nOptions: (A) x (B) y\\nResponse:`` and
``The answer is A. BECAUSE: {lecture} {solution}``, with newlines inside lecture and solution
written as a literal ``\\n`` and double spaces collapsed once, as LaVIN trains. With lecture and
solution both empty the target stays ``The answer is A. BECAUSE:``, as LaVIN's (its
``create_training_example`` means to drop the dangling ``BECAUSE:`` but assigns the result to an
unused name), so a model tuned here learns the official text. Prompt and answer are joined with
no space (``...\\nResponse:The answer is A.``) by the MMA collator, as LaVIN's
``ScienceQADataSet.tokenize`` does. ``meta`` carries what the scorer needs: the choices, the
answer index, subject, grade and whether there is a text hint / an image.
"""

from __future__ import annotations

from pathlib import Path

from vltool.data.jsonl import data_path, expect_keys, read_json
from vltool.data.sample import Sample
from vltool.errors import UserError

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FIELDS = ("question", "choices", "answer", "hint", "image", "subject", "grade", "lecture", "solution")


def sqa_prompt(question: str, hint: str, choices: list[str]) -> str:
    options = " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
    context = hint.strip() or "N/A"
    return f"Question: {question}\nContext: {context}\nOptions: {options}\nResponse:".replace("  ", " ").strip()


def sqa_target(answer_index: int, lecture: str, solution: str) -> str:
    """LaVIN's QCM-ALE target (github.com/luogen1996/LaVIN@dd0a1bf ``util/base_prompt.py``
    ``create_training_example``, output format ALE): every case, the empty one included."""
    lecture, solution = lecture.replace("\n", "\\n"), solution.replace("\n", "\\n")
    return f"The answer is {LETTERS[answer_index]}. BECAUSE: {lecture} {solution}".replace("  ", " ").strip()


def _problem(problem: object, where: str) -> dict:
    expect_keys(problem, FIELDS, where, "ScienceQA problem")
    choices, answer = problem["choices"], problem["answer"]
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
        raise UserError(f"{where}: 'choices' must be a list of 2 to {len(LETTERS)} options")
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise UserError(f"{where}: 'answer' must be an index into its {len(choices)} choices, found {answer!r}")
    return problem


def read_scienceqa(root: str | Path, split: str = "test", images: str | Path | None = None) -> list[Sample]:
    """The problems of one split in ``pid_splits.json`` order; ``images`` overrides ``DIR/images``."""
    root = data_path(str(root), "scienceqa")
    if not root.is_dir():
        raise UserError(f"scienceqa:{root} must be the ScienceQA folder holding problems.json and pid_splits.json")
    problems = read_json(root / "problems.json", "ScienceQA problems.json")
    splits = read_json(root / "pid_splits.json", "ScienceQA pid_splits.json")
    if not isinstance(problems, dict):
        raise UserError(f"{root / 'problems.json'}: expected an object mapping qid -> problem")
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise UserError(f"{root / 'pid_splits.json'}: expected an object mapping split name -> list of qids")
    if split not in splits:
        raise UserError(f"{root / 'pid_splits.json'} has no split {split!r}; it has {', '.join(sorted(splits))}")
    image_root = Path(images).expanduser() if images is not None else root / "images"
    samples = []
    for qid in map(str, splits[split]):
        if qid not in problems:
            raise UserError(f"{root / 'pid_splits.json'}: {split} qid {qid!r} is not in problems.json")
        p = _problem(problems[qid], f"{root / 'problems.json'} problem {qid!r}")
        image = str(image_root / str(p.get("split") or split) / qid / p["image"]) if p["image"] else None
        hint = p["hint"] or ""
        target = sqa_target(p["answer"], p["lecture"] or "", p["solution"] or "")
        meta = {"choices": list(p["choices"]), "answer_index": p["answer"], "subject": p["subject"],
                "grade": p["grade"], "has_hint": bool(hint), "has_image": bool(p["image"]),
                **{k: p[k] for k in ("topic", "category", "skill") if k in p}}
        samples.append(Sample(qid, image, sqa_prompt(p["question"], hint, p["choices"]), target, [target], meta))
    return samples
