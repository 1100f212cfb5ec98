"""The demo world's datasets on disk, and their readers (``demo:caption|vqa|sqa|text``).

``write_world_data`` renders every split's scenes to PNG files and writes the samples as JSON,
so training reads images through the same file path as real data. Captions are scored by the
attributes they name (synonyms map back to one canonical word): a caption "sees" when it names
the right colour, shape, size and position, whichever synonyms and template it uses.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from vltool.data.sample import Sample
from vltool.demo.render import render
from vltool.demo.world import (
    ATTRIBUTE_VALUES,
    LETTERS,
    SYNONYMS,
    caption,
    instruction_prompt,
    lm_documents,
    random_scene,
    sqa_image_item,
    sqa_prompt,
    sqa_target,
    sqa_text_item,
    text_instruction,
    vqa_pairs,
    vqa_prompt,
)
from vltool.errors import UserError

SPLITS = {"train": 3000, "val": 300, "test": 300}
KINDS = ("caption", "vqa", "sqa", "text")
CANONICAL = {syn: word for word, syns in SYNONYMS.items() for syn in syns}
ATTRS = ("colour", "shape", "size", "pos")


# The world's LMs were pre-trained on "prompt answer" documents (world.sqa_text, one space between).
# The MMA collator joins prompt and answer as LaVIN does, with nothing between them (real ScienceQA:
# "Response:The answer is A."), so the demo's answers carry their own space: the demo trains and
# scores the text its LMs learned. The references (what generations are scored against) do not.
SPACE = " "


def write_world_data(root: Path, seed: int, sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Render images and write ``{split}_{kind}.json`` under ``root``; returns sample counts."""
    counts = {}
    for offset, (split, n) in enumerate((sizes or SPLITS).items()):
        rng = random.Random(seed * 7919 + offset)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        rows: dict[str, list] = {k: [] for k in KINDS}
        for i in range(n):
            scene = random_scene(rng)
            rel = f"images/{split}/{i:05d}.png"
            render(scene, rng).save(root / rel)
            attrs = scene.attributes()
            refs = [caption(scene, rng, canonical=True)] + [caption(scene, rng) for _ in range(4)]
            rows["caption"].append({"id": f"{split}-{i}", "image": rel, "caption": refs[1],
                                    "references": refs, "attributes": attrs})
            question, answer = rng.choice(vqa_pairs(scene))
            rows["vqa"].append({"id": f"{split}-{i}", "image": rel, "question": question, "answer": answer})
            item = sqa_image_item(scene, rng) if rng.random() < 0.5 else sqa_text_item(rng)
            rows["sqa"].append({"id": f"{split}-{i}", "image": rel if item["needs_image"] else None, **item})
            question, answer = text_instruction(rng)
            rows["text"].append({"id": f"{split}-{i}", "instruction": question, "output": answer})
        for kind, data in rows.items():
            (root / f"{split}_{kind}.json").write_text(json.dumps(data))
        counts[split] = n
    return counts


def lm_corpus(seed: int, n_train: int = 8000, n_val: int = 300) -> tuple[list[str], list[str]]:
    """The LMs' pre-training documents (train, val); the tokenizers are trained on the same."""
    train = lm_documents(random.Random(seed * 31 + 1), n_train)
    return train, lm_documents(random.Random(seed * 31 + 2), n_val)


def caption_vocabulary_size(seed: int, n: int = 3000) -> int:
    """Distinct words of the world's captions: must exceed the LMs' embedding widths so that
    the word converter's fit is over-determined (DEMO_NOTES)."""
    rng = random.Random(seed * 31 + 3)
    return len({w for _ in range(n) for w in caption(random_scene(rng), rng).split()})


def read_demo(root: Path, kind: str, split: str) -> list[Sample]:
    """Samples of one demo dataset; image paths are absolute."""
    if kind not in KINDS:
        known = ", ".join(f"demo:{k}" for k in KINDS)
        raise UserError(f"unknown demo dataset 'demo:{kind}'; expected one of {known}")
    path = root / f"{split}_{kind}.json"
    if not path.is_file():
        raise UserError(f"demo data {path} is missing; run 'vltool zoo build' first")
    rows = json.loads(path.read_text())
    image = lambda rel: str(root / rel) if rel else None
    if kind == "caption":
        return [Sample(r["id"], image(r["image"]), "", r["caption"], r["references"],
                       {"attributes": r["attributes"]})
                for r in rows]
    if kind == "vqa":
        return [Sample(r["id"], image(r["image"]), vqa_prompt(r["question"]), r["answer"], [r["answer"]])
                for r in rows]
    if kind == "sqa":
        out = []
        for r in rows:
            target = sqa_target(LETTERS[r["answer"]], r["because"])
            meta = {"choices": r["options"], "answer_index": r["answer"], "has_image": r["image"] is not None,
                    "has_hint": r["context"] != "N/A", "subject": r["subject"], "category": r["category"],
                    "grade": "grade1"}
            prompt = sqa_prompt(r["question"], r["context"], r["options"])
            out.append(Sample(r["id"], image(r["image"]), prompt, SPACE + target, [target], meta))
        return out
    return [Sample(r["id"], None, instruction_prompt(r["instruction"]), SPACE + r["output"], [r["output"]])
            for r in rows]



def caption_attributes(text: str) -> dict[str, str | None]:
    """The canonical colour/shape/size/position a caption names (None where it names none)."""
    words = [CANONICAL.get(w) for w in re.findall(r"[a-z]+", text.lower())]
    return {attr: next((w for w in words if w in pool), None) for attr, pool in ATTRIBUTE_VALUES.items()}


def caption_scores(predictions: list[str], samples: list[Sample]) -> dict[str, float]:
    """Attribute accuracy (each of 4 attributes right) and scene accuracy (all 4 right), in %."""
    per_attr = {a: 0 for a in ATTRS}
    scenes = 0
    for text, sample in zip(predictions, samples):
        named = caption_attributes(text)
        right = [named[a] == sample.meta["attributes"][a] for a in ATTRS]
        for a, ok in zip(ATTRS, right):
            per_attr[a] += ok
        scenes += all(right)
    n = max(1, len(samples))
    out = {f"{a}_acc": 100.0 * v / n for a, v in per_attr.items()}
    out["attr_acc"] = sum(out.values()) / len(ATTRS)
    out["scene_acc"] = 100.0 * scenes / n
    return out
