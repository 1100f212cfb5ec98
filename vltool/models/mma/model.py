"""The LaVIN-style model: a visual front end, a frozen causal LM with MM-Adapters, a modality token.

Sequence (LaVIN): ``[modality] [BOS] "Image:" [visual tokens] prompt answer``; text-only samples
read ``"Image: N/A"``. The modality token sees only itself and nobody attends to it, so its hidden
state at every layer is a function of the modality alone. vltool therefore runs it as its own
length-1 pass through the adapted decoder (each adapter's router keeps its weights), then runs
the text with those weights: the same computation as LaVIN's masked token, with the text's
positions starting at 0 as the LM was pre-trained, and the routing weights available to fold
into the weights for a merged model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vltool.data.text_batches import IGNORE, join_prompt
from vltool.models.mma.inject import wrappers

VISUAL = -1  # placeholder id of a visual token slot in collated input_ids


class QFormerFrontEnd(nn.Module):
    """BLIP-2's VPG + projector (from a vpg artifact): images -> [B, Q, d_llm] visual tokens."""

    def __init__(self, blip2) -> None:
        super().__init__()
        self.vision_model = blip2.vision_model
        self.qformer = blip2.qformer
        self.query_tokens = blip2.query_tokens
        self.projector = blip2.language_projection

    @property
    def num_tokens(self) -> int:
        return self.query_tokens.shape[1]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        image = self.vision_model(pixel_values=pixel_values).last_hidden_state
        mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        queries = self.query_tokens.expand(image.shape[0], -1, -1)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=image, encoder_attention_mask=mask)
        return self.projector(out.last_hidden_state)


class MMAModel(nn.Module):
    """Front end + adapted LM + modality embedding; ``forward(batch)`` returns the answer loss."""

    def __init__(self, lm: nn.Module, front_end: nn.Module | None) -> None:
        super().__init__()
        self.lm = lm
        self.front_end = front_end
        self.modality = nn.Embedding(2, lm.config.hidden_size)
        nn.init.normal_(self.modality.weight, std=0.02)

    def route(self, modality: torch.Tensor) -> None:
        """The modality-token pass: every adapter keeps its routing weights for this batch."""
        layers = wrappers(self.lm)
        if not layers:  # a merged model: the routing is already folded into its weights
            return
        for w in layers:
            w.mode = "route"
        try:
            self.lm(inputs_embeds=self.modality(modality)[:, None, :], use_cache=False)
        finally:
            for w in layers:
                w.mode = "replay"

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"]
        embeds = self.lm.get_input_embeddings()(ids.clamp(min=0))
        slots = ids == VISUAL
        if slots.any():
            visual = self.front_end(batch["pixel_values"]).to(embeds.dtype)
            embeds = embeds.masked_scatter(slots[..., None], visual.reshape(-1, visual.shape[-1]))
        return embeds

    def forward(self, batch: dict[str, torch.Tensor]):
        self.route(batch["modality"])
        return self.lm(inputs_embeds=self.embed(batch), attention_mask=batch["attention_mask"],
                       labels=batch.get("labels"))

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], tokenizer, max_new_tokens: int = 64) -> list[str]:
        """Greedy decoding with the KV cache; the routing weights persist across steps."""
        self.route(batch["modality"])
        out = self.lm.generate(inputs_embeds=self.embed(batch), attention_mask=batch["attention_mask"],
                               max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                               pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


def mma_loss(model: MMAModel, batch) -> torch.Tensor:
    return model(batch).loss


class MMACollator:
    """(image tensor or None, prompt, answer) -> LaVIN's layout with answer-only labels."""

    def __init__(self, tokenizer, num_visual: int, max_length: int = 512, max_answer_tokens: int = 256) -> None:
        self.tok = tokenizer
        self.num_visual = num_visual
        self.max_length = max_length
        self.max_answer = max_answer_tokens
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] if text else []

    def head(self, has_image: bool) -> list[int]:
        bos = [self.tok.bos_token_id] if self.tok.bos_token_id is not None else []
        if has_image:
            return bos + self._ids("Image:") + [VISUAL] * self.num_visual
        return bos + self._ids("Image: N/A")

    def encode(self, has_image: bool, prompt: str, answer: str | None) -> tuple[list[int], list[int]]:
        head, p_ids = self.head(has_image), self._ids(prompt)
        if answer is None:
            return head + p_ids, [IGNORE] * (len(head) + len(p_ids))
        a_ids = self._ids(join_prompt(prompt, answer))[len(p_ids):][: self.max_answer] + [self.tok.eos_token_id]
        ids = (head + p_ids + a_ids)[: self.max_length]
        labels = ([IGNORE] * (len(head) + len(p_ids)) + a_ids)[: self.max_length]
        return ids, labels

    def batch(self, images: Sequence[torch.Tensor | None], prompts: Sequence[str],
              answers: Sequence[str] | None, left_pad: bool = False) -> dict[str, torch.Tensor]:
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
    """Collate for the training loop over a ``VLDataset`` (rows of image index, prompt, answer)."""

    def __init__(self, dataset, collator: MMACollator) -> None:
        self.dataset, self.collator = dataset, collator

    def __call__(self, rows):
        images = [self.dataset.images[i] if i >= 0 else None for i, _, _ in rows]
        return self.collator.batch(images, [r[1] for r in rows], [r[2] for r in rows])
