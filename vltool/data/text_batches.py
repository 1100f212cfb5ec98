"""Turning (prompt, answer) pairs into token batches with answer-only labels.

Every stage trains "loss on the answer only" (VPGTrans captions after an empty prompt, LaVIN
answers after the question), so this is the one place that tokenises, truncates, pads and
masks. The prompt is tokenised alone and as part of the full text, and its length masks the
labels, which is right for BPE and SentencePiece tokenizers alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vltool.errors import UserError

IGNORE = -100
EOS = "eos"  # end_of_text: the tokenizer's own end-of-sequence token
AUTO = "auto"  # end_of_text: "\n" where the tokenizer has a newline token (every OPT / LLaMA one), else EOS


def end_of_text_id(tokenizer, end_of_text: str | None, where: str = "the target tokenizer") -> int | None:
    """The token id that ends a caption and stops generation.

    VPGTrans (as LAVIS's BLIP-2 OPT) appends "\n" to every caption and generates with the "\n"
    id as end of sequence (real BLIP-2 OPT configs: eos_token_id 50118 = "\n"); a caption's last
    text token is then followed by that id, which is what tokenising ``caption + "\n"`` gives for
    BPE and SentencePiece tokenizers alike. ``None`` / ``"eos"``: the tokenizer's EOS. ``"auto"``:
    "\n" when the tokenizer spells it with its own token, else EOS (a word-level tokenizer such
    as the demo world's OPT one has no newline). Any other text must end in a token of its own.
    """
    if end_of_text is None or end_of_text == EOS:
        return tokenizer.eos_token_id
    text = "\n" if end_of_text == AUTO else end_of_text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
    last = ids[-1] if ids else None
    ok = (last is not None and last != tokenizer.unk_token_id and last not in tokenizer.all_special_ids
          and text.strip(" ") in tokenizer.decode([last]))
    if ok:
        return last
    if end_of_text == AUTO:
        return tokenizer.eos_token_id
    raise UserError(f"end_of_text {end_of_text!r}: {where} has no token of its own for it; set end_of_text: eos "
                    f"(the tokenizer's EOS) or auto")


def join_prompt(prompt: str, answer: str) -> str:
    """Prompt and answer with one space between them when neither brings its own."""
    if not prompt or prompt.endswith((" ", "\n")) or answer.startswith((" ", "\n")):
        return prompt + answer
    return f"{prompt} {answer}"


@dataclass
class TextEncoder:
    """Tokenise prompts/answers for a causal LM: BOS, prompt, answer, end; right or left padding."""

    tokenizer: object
    max_answer_tokens: int = 32
    max_length: int = 512
    end_id: int | None = None  # what ends an answer (``end_of_text_id``); None: the tokenizer's EOS

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _bos(self) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return [bos] if bos is not None else []

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    def encode_pair(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        """(input_ids, labels) for training: labels are IGNORE on BOS and prompt tokens."""
        prompt_ids = self._bos() + self._ids(prompt)
        full = self._bos() + self._ids(join_prompt(prompt, answer))
        answer_ids = full[len(prompt_ids):][: self.max_answer_tokens]
        eos = self.end_id if self.end_id is not None else self.tokenizer.eos_token_id
        answer_ids = answer_ids + ([eos] if eos is not None else [])
        ids = (prompt_ids + answer_ids)[-self.max_length:]
        labels = ([IGNORE] * len(prompt_ids) + answer_ids)[-self.max_length:]
        return ids, labels

    def encode_prompt(self, prompt: str) -> list[int]:
        return (self._bos() + self._ids(prompt))[-self.max_length:]

    def pad(self, rows: Sequence[list[int]], value: int, left: bool = False) -> torch.Tensor:
        width = max(len(r) for r in rows)
        padded = [([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows]
        return torch.tensor(padded, dtype=torch.long)

    def training_batch(self, prompts: Sequence[str], answers: Sequence[str]) -> dict[str, torch.Tensor]:
        pairs = [self.encode_pair(p, a) for p, a in zip(prompts, answers)]
        ids = [p[0] for p in pairs]
        return {
            "input_ids": self.pad(ids, self.pad_id),
            "attention_mask": self.pad([[1] * len(r) for r in ids], 0),
            "labels": self.pad([p[1] for p in pairs], IGNORE),
        }

    def generation_batch(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Left-padded prompts, as decoder-only generation needs."""
        ids = [self.encode_prompt(p) for p in prompts]
        return {
            "input_ids": self.pad(ids, self.pad_id, left=True),
            "attention_mask": self.pad([[1] * len(r) for r in ids], 0, left=True),
        }
