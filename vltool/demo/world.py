"""The demo world: procedural scenes and every kind of text the pipeline needs, from a seed.

A scene is one shape (4 kinds) with a colour (6), a size (2) and a position (4), drawn on a
32x32 canvas large and distinct enough that a tiny ViT can tell shapes apart (DEMO_NOTES: small
thin shapes capped the prototype). Each scene yields a caption written with synonyms and varied
templates (so the vocabulary is several times wider than the LMs' embeddings and a word
converter fit is not trivially exact), VQA pairs and ScienceQA-style multiple-choice items.
Text-only items (ScienceQA-style with a textual context, and arithmetic/fact instructions) test
that adapters keep text-only ability. "scene description -> caption" documents teach the LMs to
copy attributes from their context, which is what lets a soft visual prompt steer them.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

COLOURS = {
    "red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230),
    "yellow": (235, 220, 40), "purple": (150, 60, 200), "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("big", "small")
POSITIONS = ("left", "right", "top", "bottom")

SYNONYMS = {
    "red": ["red", "crimson", "scarlet"], "green": ["green", "emerald", "lime"],
    "blue": ["blue", "azure", "navy"], "yellow": ["yellow", "golden", "lemon"],
    "purple": ["purple", "violet", "lilac"], "white": ["white", "snowy", "ivory"],
    "circle": ["circle", "disc", "ring"], "square": ["square", "box", "block"],
    "triangle": ["triangle", "wedge", "pyramid"], "cross": ["cross", "plus", "star"],
    "big": ["big", "large", "huge"], "small": ["small", "little", "tiny"],
    "left": ["left"], "right": ["right"], "top": ["top"], "bottom": ["bottom"],
}
CAPTION_TEMPLATES = [
    "a {size} {colour} {shape} on the {pos}",
    "there is a {size} {colour} {shape} at the {pos}",
    "the picture shows a {colour} {shape} , {size} , near the {pos}",
    "one {size} {shape} in {colour} on the {pos} side",
    "a {colour} {shape} that is {size} sits at the {pos}",
]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
           "eighteen"]
FACTS = [
    ("what colour is grass", "green"), ("what colour is the sky", "blue"),
    ("what colour is snow", "white"), ("what colour is a lemon", "yellow"),
    ("what colour is blood", "red"), ("what colour is a plum", "purple"),
    ("how many sides has a square", "four"), ("how many sides has a triangle", "three"),
    ("how many corners has a circle", "zero"), ("how many arms has a cross", "four"),
]
FILLER = ["today we look at shapes and colours", "every picture has one shape", "people like simple pictures because they are easy to read", "a shape can be round or sharp", "colours can be warm or cold", "teachers draw shapes on the board for the children", "the museum keeps old paintings of many things"]


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    size: str
    pos: str

    def attributes(self) -> dict[str, str]:
        return asdict(self)

    def describe(self) -> str:
        """The canonical scene description the LMs learn to copy from."""
        return f"{self.size} {self.colour} {self.shape} {self.pos}"


def random_scene(rng: random.Random) -> Scene:
    return Scene(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(SIZES), rng.choice(POSITIONS))


def caption(scene: Scene, rng: random.Random, canonical: bool = False) -> str:
    """A caption with synonyms; ``canonical`` uses the first synonym and first template."""
    pick = (lambda w: SYNONYMS[w][0]) if canonical else (lambda w: rng.choice(SYNONYMS[w]))
    template = CAPTION_TEMPLATES[0] if canonical else rng.choice(CAPTION_TEMPLATES)
    return template.format(size=pick(scene.size), colour=pick(scene.colour),
                           shape=pick(scene.shape), pos=pick(scene.pos))


def vqa_pairs(scene: Scene) -> list[tuple[str, str]]:
    return [
        ("what colour is the shape ?", scene.colour),
        ("what shape is it ?", scene.shape),
        ("is the shape big or small ?", scene.size),
        ("where is the shape ?", scene.pos),
    ]


LETTERS = "ABCD"


def sqa_prompt(question: str, context: str, options: list[str]) -> str:
    """ScienceQA's prompt as LaVIN writes it (PAPERS.md 2)."""
    opts = " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    return f"Question: {question}\nContext: {context}\nOptions: {opts}\nResponse:"


def sqa_target(letter: str, because: str) -> str:
    return f"The answer is {letter}. BECAUSE: {because}"


def _choices(rng: random.Random, right: str, pool: list[str], n: int) -> tuple[list[str], int]:
    """n options that include the right one, listed in the pool's fixed order.

    A fixed order makes the letter easier to learn for models this small than shuffled options
    (still hard: in the demo, tune-mma does not lift these items above chance).
    """
    wrong = rng.sample([p for p in pool if p != right], n - 1)
    chosen = set(wrong + [right])
    options = [p for p in pool if p in chosen]
    return options, options.index(right)


def sqa_image_item(scene: Scene, rng: random.Random) -> dict:
    """A question only the image answers (context N/A), like ScienceQA's IMG items."""
    attr = rng.choice(["colour", "shape", "size", "pos"])
    pool = {"colour": list(COLOURS), "shape": list(SHAPES), "size": list(SIZES), "pos": list(POSITIONS)}[attr]
    question = {"colour": "Which colour is the shape in the picture?",
                "shape": "Which shape is in the picture?",
                "size": "Is the shape in the picture big or small?",
                "pos": "Where is the shape in the picture?"}[attr]
    right = getattr(scene, attr)
    options, answer = _choices(rng, right, pool, min(len(pool), 3))
    return {"question": question, "context": "N/A", "options": options, "answer": answer,
            "because": f"the picture shows a {scene.describe()} shape .", "subject": "natural science",
            "needs_image": True}


def sqa_text_item(rng: random.Random) -> dict:
    """A question its text context answers (no image), like ScienceQA's TXT/NO items."""
    thing = rng.choice(["ball", "kite", "box", "cup", "hat", "flag"])
    colour = rng.choice(list(COLOURS))
    shape = rng.choice(SHAPES)
    if rng.random() < 0.5:
        context, question, right, pool = (f"The {thing} is {colour}.", f"What colour is the {thing}?",
                                          colour, list(COLOURS))
    else:
        context, question, right, pool = (f"The {thing} looks like a {shape}.",
                                          f"Which shape does the {thing} look like?", shape, list(SHAPES))
    options, answer = _choices(rng, right, pool, min(len(pool), 3))
    return {"question": question, "context": context, "options": options, "answer": answer,
            "because": f"the context says so : {context.lower()}", "subject": "language science",
            "needs_image": False}


def text_instruction(rng: random.Random) -> tuple[str, str]:
    """Text-only instructions the LMs learn in pre-training (arithmetic in words, facts)."""
    if rng.random() < 0.6:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return f"what is {NUMBERS[a]} plus {NUMBERS[b]} ?", NUMBERS[a + b]
    return rng.choice(FACTS)


def lm_documents(rng: random.Random, n: int) -> list[str]:
    """The LMs' pre-training text: captions, copy documents, VQA/SQA transcripts, instructions.

    Half are copy documents ("big red circle left : a large crimson disc on the left"), which
    DEMO_NOTES found necessary for soft prompts to steer a frozen LM: the short canonical
    description is what the VPG's query tokens learn to stand in for.
    """
    docs = []
    for _ in range(n):
        scene = random_scene(rng)
        kind = rng.random()
        if kind < 0.5:
            docs.append(f"{scene.describe()} : {caption(scene, rng)}")
        elif kind < 0.6:
            docs.append(caption(scene, rng))
        elif kind < 0.7:
            question, answer = rng.choice(vqa_pairs(scene))
            docs.append(f"{scene.describe()} : question : {question} answer : {answer}")
        elif kind < 0.8:
            item = sqa_text_item(rng)
            prompt = sqa_prompt(item["question"], item["context"], item["options"])
            docs.append(f"{prompt} {sqa_target(LETTERS[item['answer']], item['because'])}")
        elif kind < 0.95:
            question, answer = text_instruction(rng)
            docs.append(f"instruction : {question} response : {answer}")
        else:
            docs.append(rng.choice(FILLER))
    return docs
