"""Small files in the real data formats, and the pixel regressor the streaming tests train.

Shared by the reader, mixture, stream, eval and stage tests (and the 2-process ``stream_fixture.py``
script, whose DataLoader workers unpickle ``ToPixels`` from here).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn


def write(path: Path, data: object) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def scienceqa_dir(root: Path) -> Path:
    """Six test questions covering every ScienceQA category, plus one train question.

    qid  subject   hint image grade  answer
    1    natural   yes  no    2      A
    2    natural   no   yes   8      B
    3    social    yes  yes   3      C
    4    social    no   no    9      A  (two choices)
    5    language  no   no    5      B
    6    language  yes  no    10     B
    """
    def problem(q, choices, answer, hint, image, subject, grade, lecture="", solution="", split="test"):
        return {"question": q, "choices": choices, "answer": answer, "hint": hint, "image": image,
                "subject": subject, "grade": grade, "lecture": lecture, "solution": solution, "split": split,
                "task": "closed choice", "topic": "t", "category": "c", "skill": "s"}

    problems = {
        "1": problem("Which is a mammal?", ["dog", "frog", "fish"], 0, "Mammals have fur.", None,
                     "natural science", "grade2", "Mammals are animals.", "A dog is a mammal."),
        "2": problem("Which magnet is stronger?", ["left", "right"], 1, "", "image.png", "natural science", "grade8"),
        "3": problem("Which is a state?", ["Paris", "Rome", "Texas"], 2, "Look at the map.", "image.png",
                     "social science", "grade3", "States are regions.\nThey have capitals.", "Texas is a state."),
        "4": problem("Is trade good?", ["yes", "no"], 0, "", None, "social science", "grade9"),
        "5": problem("Which word rhymes?", ["cat", "hat", "dog"], 1, "", None, "language science", "grade5"),
        "6": problem("Which is a verb?", ["blue", "run"], 1, "Words in a sentence.", None, "language science",
                     "grade10"),
        "7": problem("Train only?", ["a", "b"], 0, "", None, "natural science", "grade1", split="train"),
    }
    write(root / "problems.json", problems)
    write(root / "pid_splits.json", {"train": ["7"], "test": ["1", "2", "3", "4", "5", "6"]})
    return root


def vqa_files(root: Path) -> tuple[str, str]:
    questions = {"data_subtype": "val2014", "questions": [
        {"image_id": 42, "question": "What is on the table?", "question_id": 420},
        {"image_id": 7, "question": "How many dogs?", "question_id": 70}]}
    annotations = {"annotations": [
        {"question_id": 420, "image_id": 42, "answer_type": "other", "multiple_choice_answer": "cup",
         "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(["cup"] * 6 + ["mug"] * 2 + ["glass"] * 2)]},
        {"question_id": 70, "image_id": 7, "answer_type": "number", "multiple_choice_answer": "3",
         "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(["2"] * 3 + ["3"] * 7)]}]}
    return write(root / "q.json", questions), write(root / "a.json", annotations)


def jpeg_bytes(seed: int, size=(20, 16)) -> bytes:
    array = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_shard(path: Path, keys: list[str], bad: dict[str, str] | None = None) -> Path:
    bad = bad or {}
    with tarfile.open(path, "w") as tar:
        for i, key in enumerate(keys):
            members = {"jpg": jpeg_bytes(i), "txt": f"caption {key}".encode()}
            if bad.get(key) == "corrupt":
                members["jpg"] = b"broken"
            if bad.get(key) == "nocaption":
                del members["txt"]
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


class ToPixels:
    """A picklable preprocess: an 8x8 float tensor from an image path."""

    def __call__(self, image) -> torch.Tensor:
        if isinstance(image, Image.Image):  # a wds: sample arrives decoded
            array = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32) / 255
            return torch.from_numpy(array).permute(2, 0, 1).contiguous()
        with Image.open(image) as handle:
            array = np.asarray(handle.convert("RGB").resize((8, 8)), dtype=np.float32) / 255
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(192, 8), nn.Dropout(0.2), nn.Linear(8, 1))

    def forward(self, pixels):
        return self.net(pixels).squeeze(-1)
