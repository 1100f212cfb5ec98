"""LAVIS's blip_caption / blip_question text processing (vltool.data.caption_text) on real-looking text.

Expectations are derived by hand from the documented steps (lower-case; ``.!"()*#:;~`` -> space
for captions, removed for questions; runs of 2+ whitespace -> one space; strip; <= 50 words).
"""

from __future__ import annotations

import pytest

from vltool.data.caption_text import blip_caption, blip_question, processor
from vltool.errors import UserError


@pytest.mark.parametrize(("raw", "expected"), [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ("Two dogs; one brown, one white!", "two dogs one brown, one white"),       # ',' is kept
    ('The sign says "STOP" (in red).', "the sign says stop in red"),
    ("Tea time: 3:30 pm ~ relax", "tea time 3 30 pm relax"),
    ("It's a well-lit room.", "it's a well-lit room"),                           # ' and - are kept
    ("A CAT ON A MAT\n", "a cat on a mat"),
    ("  a  bus   at  the stop ", "a bus at the stop"),
    ("a\tcat", "a\tcat"),            # a lone tab is not a run of two: it stays
    ("\nA dog", "\na dog"),          # only trailing newlines are stripped
    ("What?? A #1 hit*", "what?? a 1 hit"),
])
def test_blip_caption_on_real_looking_captions(raw: str, expected: str) -> None:
    assert blip_caption(raw) == expected


def test_blip_caption_keeps_at_most_50_words() -> None:
    words = [f"w{i}" for i in range(60)]
    assert blip_caption(" ".join(words).upper() + ".") == " ".join(words[:50])
    assert blip_caption("one two three", max_words=2) == "one two"
    assert processor("blip_caption", max_words=2)("One. Two. Three.") == "one two"


@pytest.mark.parametrize(("raw", "expected"), [
    ("What color is the cat's collar?", "what color is the cat's collar?"),   # '?' is not in the set
    ("Is this a U.S. flag?", "is this a us flag?"),
    ("How many (visible) people are there ", "how many visible people are there"),
])
def test_blip_question_removes_marks(raw: str, expected: str) -> None:
    assert blip_question(raw) == expected


def test_processor_names() -> None:
    assert processor("none")("A Cat.") == "A Cat."
    with pytest.raises(UserError, match="unknown text processor 'blip'"):
        processor("blip")
