"""The caption and question text processing of VPGTrans's official runs (LAVIS ``blip_caption`` /
``blip_question``), written from their documented behaviour.

Every training caption of the official VPGTrans runs, COCO, SBU, VG and LAION-COCO alike, goes
through LAVIS's ``blip_caption`` text processor (the ``text_processor: train: name: blip_caption``
entries of VPGTrans's ``lavis/projects/blip2/train/llama_vpgtrans_step{1,2}_*.yaml``, commit
32e885c); its behaviour is defined by ``BlipCaptionProcessor.pre_caption`` in
``lavis/processors/blip_processors.py`` of the same repository (and of salesforce/LAVIS):

1. lower-case;
2. each of the characters ``. ! " ( ) * # : ; ~`` becomes a space;
3. every run of two or more whitespace characters becomes one space (a lone tab or newline stays);
4. trailing newlines, then leading and trailing spaces, are stripped;
5. at most ``max_words`` (50) words, splitting on single spaces.

A model trained this way sees lower-case captions without those marks, so training on the raw
text tokenises differently (``Two dogs.`` -> ``two dogs``). The evaluation questions of the
official VQA runs go through ``blip_question`` (``BlipQuestionProcessor.pre_question``, same file):
lower-case, the same characters removed (not replaced by a space), trailing spaces stripped, at
most 50 words.

Recipes name a processor (``text_processor: blip_caption``); ``processor(name)`` returns the
function (a plain module-level function, so DataLoader workers can pickle it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from vltool.errors import UserError

MAX_WORDS = 50
_MARKS = '.!"()*#:;~'
_TO_SPACE = str.maketrans({c: " " for c in _MARKS})
_DROP = str.maketrans({c: None for c in _MARKS})
_WHITESPACE_RUN = re.compile(r"\s{2,}")


def _first_words(text: str, max_words: int) -> str:
    words = text.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else text


def blip_caption(text: str, max_words: int = MAX_WORDS) -> str:
    """A caption as LAVIS's ``blip_caption`` gives it to the model (see the module docstring)."""
    text = _WHITESPACE_RUN.sub(" ", text.lower().translate(_TO_SPACE))
    return _first_words(text.rstrip("\n").strip(" "), max_words)


def blip_question(text: str, max_words: int = MAX_WORDS) -> str:
    """A VQA question as LAVIS's ``blip_question`` gives it to the prompt (see the module docstring)."""
    return _first_words(text.lower().translate(_DROP).rstrip(" "), max_words)


def _identity(text: str) -> str:
    return text


PROCESSORS: dict[str, Callable[[str], str]] = {
    "none": _identity,
    "blip_caption": blip_caption,
    "blip_question": blip_question,
}


def processor(name: str, max_words: int = MAX_WORDS) -> Callable[[str], str]:
    """The text function a recipe names (``none`` keeps the text as it is)."""
    if name not in PROCESSORS:
        raise UserError(f"unknown text processor {name!r}; expected one of {', '.join(PROCESSORS)}")
    fn = PROCESSORS[name]
    return fn if name == "none" or max_words == MAX_WORDS else partial(fn, max_words=max_words)
