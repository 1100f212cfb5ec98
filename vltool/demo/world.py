"""The demo world: procedural scenes and every kind of text the pipeline needs, from a seed.

A scene is one shape (4 kinds) with a colour (6), a size (2) and a position (4), drawn on a
32x32 canvas large and distinct enough that a tiny ViT can tell shapes apart (DEMO_NOTES: small
thin shapes capped the prototype). Everything else is text about scenes:

- captions written with synonyms, varied templates and filler openers, so the caption
  vocabulary (94 words for seed 0) is wider than the source LM's embedding (64): a word
  converter fit is then over-determined and its held-out quality means something (DEMO_NOTES);
- VQA pairs in the ``Question: {q} Answer:`` format BLIP-2 evaluates with;
- ScienceQA-style items in real ScienceQA's prompt format: IMG (only the picture answers),
  TXT (a text context answers) and NO (world knowledge answers). Like many real ScienceQA
  question types ("Which tense...?", "Is it a solid or a liquid?") each question type has a
  fixed option list in a fixed order, so a two-layer LM can learn the answer letter without an
  induction circuit for matching option words (with shuffled options it stayed at chance);
- text-only instructions (arithmetic in words, facts about the world) for the text-only check;
- "scene description : caption" (and ". question") documents: the LMs learn to take a
  scene's attributes from their context, which is what lets a soft visual prompt stand in for
  the description later (DEMO_NOTES).
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
ATTRIBUTE_VALUES = {"colour": tuple(COLOURS), "shape": SHAPES, "size": SIZES, "pos": POSITIONS}

# The first synonym is the canonical word (scene descriptions, VQA/SQA answers, scoring).
SYNONYMS = {
    "red": ["red", "crimson", "scarlet"], "green": ["green", "emerald", "lime"],
    "blue": ["blue", "azure", "navy"], "yellow": ["yellow", "golden", "amber"],
    "purple": ["purple", "violet", "lilac"], "white": ["white", "snowy", "ivory"],
    "circle": ["circle", "disc", "ring", "ball"], "square": ["square", "box", "block", "tile"],
    "triangle": ["triangle", "wedge", "pyramid", "cone"], "cross": ["cross", "plus", "star", "x"],
    "big": ["big", "large", "huge", "giant"], "small": ["small", "little", "tiny", "mini"],
    "left": ["left", "west"], "right": ["right", "east"],
    "top": ["top", "upper", "north"], "bottom": ["bottom", "lower", "south"],
}
OPENERS = ["", "", "", "here we see", "in this image ,", "look ,", "this picture shows", "we can see",
           "in the drawing ,", "the artist painted", "someone drew", "on the canvas ,",
           "inside the frame ,"]
CAPTION_TEMPLATES = [
    "a {size} {colour} {shape} on the {pos} side",
    "there is a {size} {colour} {shape} at the {pos}",
    "one {colour} {shape} , {size} , near the {pos} edge",
    "a {size} {shape} in {colour} on the {pos} part",
    "a {colour} {shape} that is {size} sits at the {pos}",
    "the {pos} side has a {size} {colour} {shape}",
    "you can find a {size} {colour} {shape} placed {pos}",
    "a {size} {shape} coloured {colour} , drawn at the {pos}",
    "a {colour} {shape} rests {pos} , quite {size}",
    "near the {pos} corner lies a {size} {colour} {shape}",
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
FILLER = [
    "today we look at shapes and colours", "every picture has one shape",
    "people like simple pictures because they are easy to read", "a shape can be round or sharp",
    "colours can be warm or cold", "teachers draw shapes on the board for the children",
    "the museum keeps old paintings of many things", "a good drawing needs a steady hand",
    "artists mix paint to get new colours", "children learn to count with small blocks",
]
THINGS = ["kite", "cup", "hat", "flag", "boat", "lamp", "coin", "door"]


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    size: str
    pos: str

    def attributes(self) -> dict[str, str]:
        return asdict(self)

    def describe(self) -> str:
        """The canonical scene description the LMs learn to read attributes from."""
        return f"{self.size} {self.colour} {self.shape} {self.pos}"


def random_scene(rng: random.Random) -> Scene:
    return Scene(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(SIZES), rng.choice(POSITIONS))


def caption(scene: Scene, rng: random.Random, canonical: bool = False) -> str:
    """A caption with synonyms; ``canonical`` uses the first synonym, no opener, first template."""
    pick = (lambda w: SYNONYMS[w][0]) if canonical else (lambda w: rng.choice(SYNONYMS[w]))
    template = CAPTION_TEMPLATES[0] if canonical else rng.choice(CAPTION_TEMPLATES)
    opener = "" if canonical else rng.choice(OPENERS)
    text = template.format(size=pick(scene.size), colour=pick(scene.colour),
                           shape=pick(scene.shape), pos=pick(scene.pos))
    return f"{opener} {text}" if opener and text.startswith(("a ", "one ")) else text


def vqa_pairs(scene: Scene) -> list[tuple[str, str]]:
    return [
        ("what colour is the shape ?", scene.colour),
        ("what shape is it ?", scene.shape),
        ("is the shape big or small ?", scene.size),
        ("where is the shape ?", scene.pos),
    ]


def vqa_prompt(question: str) -> str:
    """BLIP-2's VQA prompt (PAPERS.md 1)."""
    return f"Question: {question} Answer:"


LETTERS = "ABCDE"
# Fixed option lists per question type (see the module docstring); colour has two lists of 3.
OPTION_SETS = {
    "colour": (("red", "yellow", "purple"), ("green", "blue", "white")),
    "shape": (SHAPES,), "size": (SIZES,), "pos": (POSITIONS,),
}
IMAGE_QUESTIONS = {
    "colour": "Which colour is the shape in the picture?",
    "shape": "Which shape is in the picture?",
    "size": "Is the shape in the picture big or small?",
    "pos": "Where is the shape in the picture?",
}


def options_for(attribute: str, right: str) -> list[str]:
    return list(next(group for group in OPTION_SETS[attribute] if right in group))


def sqa_prompt(question: str, context: str, options: list[str]) -> str:
    """ScienceQA's prompt as LaVIN writes it (PAPERS.md 2)."""
    opts = " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    return f"Question: {question}\nContext: {context}\nOptions: {opts}\nResponse:"


def sqa_target(letter: str, because: str) -> str:
    return f"The answer is {letter}. BECAUSE: {because}"


def _item(question: str, context: str, options: list[str], right: str, because: str, subject: str,
          category: str) -> dict:
    return {"question": question, "context": context, "options": options, "answer": options.index(right),
            "because": because, "subject": subject, "category": category, "needs_image": category == "IMG"}


def sqa_image_item(scene: Scene, rng: random.Random) -> dict:
    """A question only the image answers (context N/A), like ScienceQA's IMG items."""
    attr = rng.choice(list(IMAGE_QUESTIONS))
    right = getattr(scene, attr)
    return _item(IMAGE_QUESTIONS[attr], "N/A", options_for(attr, right), right,
                 f"the shape in the picture is {right} .", "natural science", "IMG")


def sqa_text_item(rng: random.Random) -> dict:
    """A question its text context (TXT) or world knowledge (NO) answers, with no image."""
    thing = rng.choice(THINGS)
    kind = rng.random()
    if kind < 0.4:
        right = rng.choice(list(COLOURS))
        return _item(f"What colour is the {thing}?", f"The {thing} is {right}.", options_for("colour", right),
                     right, f"the context says the {thing} is {right} .", "language science", "TXT")
    if kind < 0.8:
        right = rng.choice(SHAPES)
        return _item(f"Which shape does the {thing} look like?", f"The {thing} looks like a {right}.",
                     options_for("shape", right), right, f"the context says the {thing} is a {right} .",
                     "language science", "TXT")
    question, right = rng.choice(FACTS[:6])
    return _item(question.capitalize() + "?", "N/A", options_for("colour", right), right,
                 f"{question.removeprefix('what colour is ')} is {right} .", "natural science", "NO")


def sqa_text(item: dict) -> str:
    """An item as one training document: prompt, then target."""
    return f"{sqa_prompt(item['question'], item['context'], item['options'])} " \
           f"{sqa_target(LETTERS[item['answer']], item['because'])}"


def text_instruction(rng: random.Random) -> tuple[str, str]:
    """Text-only instructions the LMs learn in pre-training (arithmetic in words, facts)."""
    if rng.random() < 0.6:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return f"what is {NUMBERS[a]} plus {NUMBERS[b]} ?", NUMBERS[a + b]
    return rng.choice(FACTS)


def instruction_prompt(question: str) -> str:
    return f"instruction : {question} response :"


# Shares of the LM pre-training documents (see ``lm_documents``).
DOC_MIX = (("copy", 0.35), ("caption", 0.15), ("vqa", 0.08), ("sqa_image", 0.12), ("sqa_text", 0.12),
           ("instruction", 0.13), ("filler", 0.05))


def described(scene: Scene, text: str, question: bool = False) -> str:
    """``text`` after the scene's description: "big red circle left : a huge crimson disc ...".

    Questions follow "." and captions ":". With one separator, "Question" was the likeliest
    token after it, and a source VPG trained on captions (whose soft prompt comes to stand for
    "description :") began a third of its greedy captions with "Question".
    """
    return f"{scene.describe()} {'.' if question else ':'} {text}"


def lm_document(rng: random.Random) -> str:
    """One pre-training document, drawn from ``DOC_MIX``.

    Copy documents ("big red circle left : a large crimson disc on the west side"), VQA and IMG
    ScienceQA transcripts all start with the canonical scene description (``described``): they teach the LM to
    take a scene's attributes from its context, the skill a VPG's soft prompt relies on
    (DEMO_NOTES). TXT/NO ScienceQA items and instructions are the text-only abilities MMA must
    keep.
    """
    scene = random_scene(rng)
    draw, kind = rng.random(), DOC_MIX[-1][0]
    for name, share in DOC_MIX:
        if draw < share:
            kind = name
            break
        draw -= share
    if kind == "copy":
        return described(scene, caption(scene, rng))
    if kind == "caption":
        return caption(scene, rng)
    if kind == "vqa":
        question, answer = rng.choice(vqa_pairs(scene))
        return described(scene, f"{vqa_prompt(question)} {answer}", question=True)
    if kind == "sqa_image":
        return described(scene, sqa_text(sqa_image_item(scene, rng)), question=True)
    if kind == "sqa_text":
        return sqa_text(sqa_text_item(rng))
    if kind == "instruction":
        question, answer = text_instruction(rng)
        return f"{instruction_prompt(question)} {answer}"
    return rng.choice(FILLER)


def lm_documents(rng: random.Random, n: int) -> list[str]:
    """The LMs' pre-training text (see ``lm_document``)."""
    return [lm_document(rng) for _ in range(n)]
