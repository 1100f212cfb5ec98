"""LaVIN's token layout for MMA batches: [BOS] "Image: " [visual slots] prompt answer.

Text-only samples read ``[BOS] "Image: N/A" prompt answer`` (LaVIN's prefix for samples without
an image). The ids are LaVIN's on a LLaMA SentencePiece tokenizer (github.com/luogen1996/LaVIN@dd0a1bf
``engine.py`` / ``lavin/generator.py`` encode ``"Image: "`` -- trailing space, one token ``▁`` more
than ``"Image:"`` -- and ``"Image: N/A"`` on their own; ``util/datasets.py`` encodes
``prompt + answer`` as one string, no space put between them, and ``lavin/model.py``
``insert_image_embeds`` puts prefix and visual tokens after its BOS). ``tests/models/mma/test_mma_layout_ids.py``
compares the ids with that construction. Visual-token slots hold ``VISUAL`` (-1) in ``input_ids``; ``MMAModel.embed`` fills them
with the front end's tokens, and ``MMAModel`` prepends the modality token itself (it is an
embedding, not a vocabulary id). Labels are -100 everywhere except the answer (and its EOS), so
the loss is on the answer only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vltool.data.text_batches import IGNORE

VISUAL = -1  # placeholder id of a visual-token slot in collated input_ids
IMAGE_TOKEN = "<image>"

__all__ = ["IGNORE", "IMAGE_TOKEN", "VISUAL", "MMACollator", "MMADatasetCollate", "image_prompt"]


def image_prompt(prompt: str, visual_tokens: int) -> str:
    """LaVIN's text for an image sample, the visual slots written as ``<image>`` placeholders.

    A merged Q-Former MMA folder is prompted with exactly this string (the tokenizer adds BOS);
    when the tokenizer has ``<image>``, training tokenises this same string, so plain
    transformers sees the ids vltool trained on whatever the tokenizer family (GPT-2 BPE and
    SentencePiece split text around special tokens differently).
    """
    # " " before the prompt: LaVIN tokenises the prompt on its own, so SentencePiece starts it with
    # its dummy-prefix "▁"; after a special token a tokenizer starts a new piece, and the space is
    # what gives that "▁" back (the same ids, tests/models/mma/test_mma_layout_ids.py)
    return "Image: " + IMAGE_TOKEN * visual_tokens + (" " + prompt if prompt else "")


MAX_ANSWER_TOKENS = 256  # an answer's tokens before its EOS (longer ones are cut)


class MMACollator:
    """(image tensor or None, prompt, answer) rows -> an MMAModel batch."""

    def __init__(self, tokenizer, visual_tokens: int, max_length: int = 512,
                 max_answer_tokens: int = MAX_ANSWER_TOKENS) -> None:
        self.tok = tokenizer
        self.visual_tokens = visual_tokens
        self.max_length = max_length
        self.max_answer = max_answer_tokens
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] if text else []

    def head(self, has_image: bool) -> list[int]:
        bos = [self.tok.bos_token_id] if self.tok.bos_token_id is not None else []
        if has_image:
            return bos + self._ids("Image: ") + [VISUAL] * self.visual_tokens
        return bos + self._ids("Image: N/A")

    def head_and_prompt(self, has_image: bool, prompt: str) -> tuple[list[int], list[int]]:
        """(head ids with VISUAL slots, prompt ids); see ``image_prompt`` for image rows."""
        vocab = self.tok.get_vocab()
        if not has_image or IMAGE_TOKEN not in vocab:
            return self.head(has_image), self._ids(prompt)
        bos = [self.tok.bos_token_id] if self.tok.bos_token_id is not None else []
        ids = bos + self._ids(image_prompt(prompt, self.visual_tokens))
        slots = [i for i, t in enumerate(ids) if t == vocab[IMAGE_TOKEN]]
        if len(slots) != self.visual_tokens or slots[-1] - slots[0] + 1 != self.visual_tokens:
            raise ValueError(f"the prompt {prompt!r} must not contain {IMAGE_TOKEN} itself")
        end = slots[-1] + 1
        return [VISUAL if t == vocab[IMAGE_TOKEN] else t for t in ids[:end]], ids[end:]

    def encode(self, has_image: bool, prompt: str, answer: str | None) -> tuple[list[int], list[int]]:
        head, p_ids = self.head_and_prompt(has_image, prompt)
        if answer is None:
            return head + p_ids, [IGNORE] * (len(head) + len(p_ids))
        # LaVIN concatenates prompt and answer as they are (ScienceQA: "...\nResponse:The answer is A."),
        # and masks the prompt's own token count (util/datasets.py ``tokenize``)
        alone = len(self._ids(prompt))
        a_ids = self._ids(prompt + answer)[alone:][: self.max_answer] + [self.tok.eos_token_id]
        ids = (head + p_ids + a_ids)[: self.max_length]
        labels = ([IGNORE] * (len(head) + len(p_ids)) + a_ids)[: self.max_length]
        return ids, labels

    def batch(self, images: Sequence[torch.Tensor | None], prompts: Sequence[str],
              answers: Sequence[str] | None, left_pad: bool = False) -> dict[str, torch.Tensor]:
        """Right-padded for training; ``left_pad=True`` for generation."""
        rows = [self.encode(img is not None, p, None if answers is None else a)
                for img, p, a in zip(images, prompts, answers or [None] * len(prompts))]
        width = max(len(r[0]) for r in rows)

        def pad(seq: list[int], value: int) -> list[int]:
            fill = [value] * (width - len(seq))
            return fill + seq if left_pad else seq + fill

        out = {
            "input_ids": torch.tensor([pad(r[0], self.pad) for r in rows]),
            "attention_mask": torch.tensor([pad([1] * len(r[0]), 0) for r in rows]),
            "modality": torch.tensor([int(img is not None) for img in images]),
        }
        if answers is not None:
            out["labels"] = torch.tensor([pad(r[1], IGNORE) for r in rows])
        pixels = [img for img in images if img is not None]
        if pixels:
            out["pixel_values"] = torch.stack(pixels)
        return out


class MMADatasetCollate:
    """Collate for the training loop: rows of (pixels, or an image index into ``dataset.images``, or -1
    for text-only; prompt; answer), as ``MixedVLData`` (pixels decoded in its ``__getitem__``) and
    ``VLDataset`` (indices) give them."""

    def __init__(self, dataset, collator: MMACollator) -> None:
        self.dataset, self.collator = dataset, collator

    def __call__(self, rows):
        images = [i if isinstance(i, torch.Tensor) else self.dataset.images[i] if i >= 0 else None
                  for i, _, _ in rows]
        return self.collator.batch(images, [r[1] for r in rows], [r[2] for r in rows])
