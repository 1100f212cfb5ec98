"""``llava:PATH``: LLaVA conversation JSON (a list of {id, image?, conversations: [{from, value}]}).

Every human -> gpt turn pair becomes one sample whose target is the gpt reply and whose prompt
is the instruction template (see ``alpaca.instruction_prompt``) with the earlier turns of the
same conversation as context, so multi-turn data trains the later answers in context instead of
as if they were asked cold (LaVIN flattened them). The ``<image>`` marker is removed: the model
places the image itself. Ids: the conversation's id for its first pair, ``{id}#2``, ``{id}#3``
for the later ones. Roles ``human``/``user`` and ``gpt``/``assistant`` are accepted; ``system``
turns are skipped; a reply with no question before it is an error. Relative image paths are
under ``images`` (LLaVA's are COCO ``train2017`` file names), else beside the JSON file.
"""

from __future__ import annotations

import re
from pathlib import Path

from vltool.data.alpaca import instruction_prompt
from vltool.data.images import resolve_image_path
from vltool.data.jsonl import data_path, expect_keys, expect_str, list_rows
from vltool.data.sample import Sample
from vltool.data.sample_table import SampleTable, SampleTableBuilder
from vltool.errors import UserError

HUMAN, GPT = {"human", "user"}, {"gpt", "assistant"}
_IMAGE_MARK = re.compile(r"\s*<image>\s*")


def strip_image_marker(text: str) -> str:
    return _IMAGE_MARK.sub(" ", text).strip()


def _pairs(turns: object, where: str) -> list[tuple[str, str]]:
    if not isinstance(turns, list):
        raise UserError(f"{where}: 'conversations' must be a list of {{from, value}} turns")
    pairs, question = [], None
    for k, turn in enumerate(turns):
        expect_keys(turn, ("from", "value"), f"{where} turn {k}", "conversation turn")
        role, text = str(turn["from"]).lower(), expect_str(turn, "value", f"{where} turn {k}")
        if role in HUMAN:
            question = strip_image_marker(text) if question is None else f"{question}\n{strip_image_marker(text)}"
        elif role in GPT:
            if question is None:
                raise UserError(f"{where} turn {k}: a {role!r} reply with no human turn before it")
            pairs.append((question, text.strip()))
            question = None
        elif role != "system":
            raise UserError(f"{where} turn {k}: unknown role {turn['from']!r}; expected human or gpt")
    return pairs


def read_llava(path: str | Path, images: str | Path | None = None) -> SampleTable:
    path = data_path(str(path), "llava")
    samples = SampleTableBuilder()
    for index, where, row in list_rows(path, "LLaVA", "LLaVA conversation", "LLaVA conversation",
                                       ("conversations",)):
        conv_id = str(row.get("id", index))
        image = row.get("image")
        if image is not None and not isinstance(image, str):
            raise UserError(f"{where}: 'image' must be a path string, found {type(image).__name__}")
        image = resolve_image_path(image, images, path.parent) if image else None
        pairs = _pairs(row["conversations"], where)
        for k, (question, answer) in enumerate(pairs):
            sample_id = conv_id if k == 0 else f"{conv_id}#{k + 1}"
            samples.append(Sample(sample_id, image, instruction_prompt(question, pairs[:k]), answer, [answer],
                                  {"conversation": conv_id, "turn": k + 1}))
    return samples.finish()
