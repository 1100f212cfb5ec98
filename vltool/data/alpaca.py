"""``alpaca:PATH``: Alpaca-style instruction JSON (a list of {instruction, input, output}).

These are the text-only half of Mixture-of-Modality training, so samples have no image. The
prompt is LaVIN's instruction template (its ``tools/data_processing.py``):
``Instruction: {instruction} {input}\\nResponse:`` with double spaces collapsed once; the target
is ``output``. ``instruction_prompt`` is shared with the LLaVA reader so every instruction
source looks the same to the model. Sample ids are the item's index in the list (from 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vltool.data.jsonl import data_path, expect_str, list_rows
from vltool.data.sample import Sample
from vltool.data.sample_table import SampleTable, SampleTableBuilder


def instruction_prompt(instruction: str, history: Sequence[tuple[str, str]] = ()) -> str:
    """LaVIN's ``Instruction: ...\\nResponse:``, after earlier (instruction, response) turns."""
    turns = [f"Instruction: {q}\nResponse: {a}" for q, a in history] + [f"Instruction: {instruction}\nResponse:"]
    return "\n".join(turns).replace("  ", " ").strip()


def read_alpaca(path: str | Path) -> SampleTable:
    path = data_path(str(path), "alpaca")
    samples = SampleTableBuilder()
    for index, where, row in list_rows(path, "Alpaca", "Alpaca instruction", "Alpaca instruction",
                                       ("instruction", "output")):
        instruction, output = expect_str(row, "instruction", where), expect_str(row, "output", where)
        extra = expect_str(row, "input", where) if row.get("input") is not None else ""
        text = f"{instruction} {extra}".strip() if extra.strip() else instruction
        samples.append(Sample(str(index), None, instruction_prompt(text), output, [output]))
    return samples.finish()
