"""``vqav2:QUESTIONS_JSON[,ANNOTATIONS_JSON]``: the official VQAv2 question and annotation files.

Questions: ``{"data_subtype": "val2014", "questions": [{question_id, image_id, question}]}``.
Annotations: ``{"annotations": [{question_id, image_id, answers: [{answer, ...}] x 10,
multiple_choice_answer, answer_type, question_type}]}``. The annotations are optional so test-dev
questions can be answered (and saved) without them; scoring then refuses.

Each question is a sample with VPGTrans's evaluation prompt ``Question: {} Answer:``, id = the
question id, references = the ten human answers (the metric needs all ten) and answer = the most
common one (``multiple_choice_answer``, which the VQA team computed that way), used as the
training target. Images follow COCO's naming, ``COCO_{data_subtype}_{image_id:012d}.jpg``, under
``images/{data_subtype}/`` when that folder exists, else directly under ``images`` (default: the
questions file's folder); without ``data_subtype`` the COCO-2017 name ``{image_id:012d}.jpg``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from vltool.data.caption_text import processor
from vltool.data.jsonl import data_path, expect_keys, expect_str, read_json
from vltool.data.sample import Sample
from vltool.errors import UserError

PROMPT = "Question: {} Answer:"


def _section(data: object, key: str, path: Path, what: str) -> list:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise UserError(f"{path} is not an official VQAv2 {what} file: expected an object with a {key!r} list")
    return data[key]


def _image_path(image_id: int, subtype: str | None, root: Path) -> str:
    if subtype is None:
        return str(root / f"{image_id:012d}.jpg")
    folder = root / subtype if (root / subtype).is_dir() else root
    return str(folder / f"COCO_{subtype}_{image_id:012d}.jpg")


def _answers(row: dict, where: str) -> list[str]:
    answers = row["answers"]
    if not isinstance(answers, list) or not answers:
        raise UserError(f"{where}: 'answers' must be a non-empty list of {{answer}} objects")
    out = []
    for k, item in enumerate(answers):
        expect_keys(item, ("answer",), f"{where} answer {k}", "VQA answer")
        out.append(str(item["answer"]))
    return out


def read_annotations(path: Path) -> dict[str, dict]:
    """question id (str) -> annotation row with its answers checked."""
    rows = _section(read_json(path, "VQAv2 annotations"), "annotations", path, "annotations")
    out = {}
    for index, row in enumerate(rows):
        where = f"{path} annotation {index}"
        expect_keys(row, ("question_id", "answers"), where, "VQAv2 annotation")
        out[str(row["question_id"])] = {**row, "answers": _answers(row, where)}
    return out


def read_vqav2(questions: str | Path, annotations: str | Path | None = None,
               images: str | Path | None = None) -> list[Sample]:
    qpath = data_path(str(questions), "vqav2")
    data = read_json(qpath, "VQAv2 questions")
    rows = _section(data, "questions", qpath, "questions")
    subtype = data.get("data_subtype")
    root = Path(images).expanduser() if images is not None else qpath.parent
    notes = read_annotations(data_path(str(annotations), "vqav2")) if annotations else {}
    if annotations:
        lacking = [str(r.get("question_id")) for r in rows if isinstance(r, dict) and str(r.get("question_id")) not in notes]
        if lacking:
            raise UserError(f"{annotations}: {len(lacking)} of {len(rows)} questions in {qpath} have no annotation "
                            f"(e.g. question_id {', '.join(lacking[:3])}); are these the matching split's files?")
    samples = []
    for index, row in enumerate(rows):
        where = f"{qpath} question {index}"
        expect_keys(row, ("question_id", "image_id", "question"), where, "VQAv2 question")
        qid, question = str(row["question_id"]), expect_str(row, "question", where)
        try:
            image_id = int(row["image_id"])
        except (TypeError, ValueError):
            raise UserError(f"{where}: 'image_id' must be an integer, found {row['image_id']!r}") from None
        note = notes.get(qid)
        refs = note["answers"] if note else []
        answer = str(note.get("multiple_choice_answer") or Counter(refs).most_common(1)[0][0]) if note else ""
        meta = {"question_id": row["question_id"], "image_id": image_id, "question": question}
        if note:
            meta.update({k: note[k] for k in ("answer_type", "question_type") if k in note})
        samples.append(Sample(qid, _image_path(image_id, subtype, root), PROMPT.format(question), answer, refs, meta))
    return samples


def with_question_text(samples: list[Sample], name: str) -> list[Sample]:
    """VQA samples re-prompted with their question through the text processor ``name``
    (``blip_question``: VPGTrans's VQA evaluation; ``vltool.data.caption_text``); others unchanged."""
    if name == "none":
        return samples
    from dataclasses import replace


    text = processor(name)
    return [replace(s, prompt=PROMPT.format(text(s.meta["question"]))) if "question" in s.meta else s
            for s in samples]


def read_vqav2_spec(arg: str, images: str | Path | None = None) -> list[Sample]:
    """``QUESTIONS[,ANNOTATIONS]`` as a SPEC argument gives them."""
    parts = [p.strip() for p in arg.split(",")]
    if len(parts) > 2 or not parts[0]:
        raise UserError(f"data spec 'vqav2:{arg}': expected vqav2:QUESTIONS_JSON,ANNOTATIONS_JSON")
    return read_vqav2(parts[0], parts[1] if len(parts) == 2 and parts[1] else None, images)
