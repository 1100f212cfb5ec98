"""``gqa:QUESTIONS_JSON``: GQA questions with their answers (VPGTrans reports GQA test-dev balanced).

Two shapes of the same questions are read:
- the official GQA release (``testdev_balanced_questions.json``): an object ``question id ->
  {imageId, question, answer, ...}``, images at ``{imageId}.jpg``;
- LAVIS's converted annotation list: ``[{image, question, answer, question_id}, ...]``.
Relative image paths are under ``--images`` (else the JSON's folder).

Each question is a sample with VPGTrans's evaluation prompt ``Question: {} Answer:`` (its
``lavis/projects/blip2/eval/gqa_llama_eval.yaml``, commit 32e885c) and one reference, the answer;
it is scored in the ``vqa`` family, whose ``exact_match`` with one reference is GQA accuracy (the
official task, ``GQATask._report_metrics`` in VPGTrans's ``lavis/tasks/vqa.py``, normalises the
prediction with the VQA punctuation / digit / article rules and compares it with the answer;
vltool normalises both, which changes nothing for GQA's lower-case one-word answers).
"""

from __future__ import annotations

from pathlib import Path

from vltool.data.images import resolve_image_path
from vltool.data.jsonl import data_path, expect_keys, expect_str, read_json
from vltool.data.sample import Sample
from vltool.data.vqav2 import PROMPT
from vltool.errors import UserError


def _sample(qid: str, image: str, question: str, answer: str, root: str | Path | None, base: Path) -> Sample:
    return Sample(qid, resolve_image_path(image, root, base), PROMPT.format(question), answer, [answer],
                  {"question_id": qid, "question": question, "image_file": image})


def read_gqa(path: str | Path, images: str | Path | None = None) -> list[Sample]:
    path = data_path(str(path), "gqa")
    data = read_json(path, "GQA questions")
    samples = []
    if isinstance(data, dict):  # the official release
        for qid, row in data.items():
            where = f"{path} question {qid}"
            expect_keys(row, ("imageId", "question", "answer"), where, "GQA question")
            samples.append(_sample(str(qid), f"{expect_str(row, 'imageId', where)}.jpg",
                                   expect_str(row, "question", where), expect_str(row, "answer", where),
                                   images, path.parent))
    elif isinstance(data, list):  # LAVIS's annotation list
        for index, row in enumerate(data):
            where = f"{path} item {index}"
            expect_keys(row, ("image", "question", "answer"), where, "GQA question")
            answer = row["answer"]
            if isinstance(answer, list) and answer:
                answer = answer[0]
            if not isinstance(answer, str):
                raise UserError(f"{where}: 'answer' must be a string, found {answer!r:.40}")
            samples.append(_sample(str(row.get("question_id", index)), expect_str(row, "image", where),
                                   expect_str(row, "question", where), answer, images, path.parent))
    else:
        raise UserError(f"{path} is not a GQA questions file: expected an object of question id -> "
                        "{imageId, question, answer} (the official release) or a list of {image, question, answer}")
    return samples
