"""The LaVIN-style model: a visual front end, a frozen causal LM with MM-Adapters, a modality token.

Sequence (LaVIN): ``[modality] [BOS] "Image: " [visual tokens] prompt answer``; text-only samples
read ``"Image: N/A"`` (``layout.py`` builds the text part; this module prepends the modality
token and fills the visual slots). The modality token sits at slot 0 with the mask of
``modality.py``, so each adapter's router reads a state that depends on (modality, layer) only.

Training (``forward``) runs the whole sequence at once. Generation first runs the modality token
alone (the same computation, since it sees only itself), every router keeps its weights, and
the prompt and each KV-cached decoding step are routed with them: the token's own key/value
would be masked out anyway, so it is left out of the cache and HF ``generate`` runs unchanged
on ``inputs_embeds``. A merged model (no adapters left) runs the text alone.

Batch format (``forward``/``generate``), as ``layout.MMACollator`` makes it:
``input_ids`` [B, T] with ``VISUAL`` (-1) in visual-token slots; ``attention_mask`` [B, T];
``modality`` [B] (0 text-only, 1 image; derived from the slots when absent);
``pixel_values`` [N, 3, H, W] for the N rows that have visual slots, in row order;
``labels`` [B, T] (-100 except on answer tokens) for the loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from vltool.errors import UserError
from vltool.models.lm_loss import labelled_loss
from vltool.models.mma.inject import set_routing, wrappers
from vltool.models.mma.layout import IGNORE, VISUAL
from vltool.models.mma.modality import ModalityToken, additive, modality_mask, modality_positions

TRAINABLE_PREFIXES = ("modality.", "front_end.projector.")


def is_trainable_name(name: str) -> bool:
    """Adapters (with routers), the modality token and the visual projection: LaVIN's 3.78M."""
    return ".adapter." in name or name.startswith(TRAINABLE_PREFIXES)


class MMAModel(nn.Module):
    """Front end + adapted LM + modality token; ``forward(batch)`` gives the answer-only loss.

    ``lm`` must already carry its adapters (``inject``); ``front_end`` is any module mapping
    pixel_values to [B, n, d_llm] (None for a text-only model).
    """

    # A text-only micro-batch never runs the front end (its projection and vision adapters get no
    # gradient on that process): under DDP the training loop asks for find_unused_parameters.
    may_leave_parameters_unused = True

    def __init__(self, lm: nn.Module, front_end: nn.Module | None = None) -> None:
        super().__init__()
        self.lm = lm
        self.front_end = front_end
        self.modality = ModalityToken(lm.config.hidden_size)

    @property
    def merged(self) -> bool:
        """True when the LM has no adapters left (a merged model): no modality token is used."""
        return not wrappers(self.lm)

    # ----- trainable tensors ------------------------------------------------------------------
    def set_trainable(self) -> None:
        """Freeze everything except adapters, routers, the modality token and the visual projection."""
        self.requires_grad_(False)
        for name, param in self.named_parameters():
            if is_trainable_name(name):
                param.requires_grad_(True)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Exactly the tensors an ``adapters`` artifact stores (contiguous, detached)."""
        return {n: p.detach().contiguous() for n, p in self.named_parameters() if is_trainable_name(n)}

    def save_trainable(self, path) -> None:
        save_file({n: t.cpu() for n, t in self.trainable_state().items()}, str(path))

    def load_trainable(self, tensors: Mapping[str, torch.Tensor] | str, source: str = "adapters") -> None:
        """Load adapter tensors; every trainable tensor must be present with its shape."""
        if not isinstance(tensors, Mapping):
            source, tensors = str(tensors), load_file(str(tensors))
        expected = dict(self.trainable_state())
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise UserError(f"{source} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]} "
                            f"(adapter placement, front end or width differ)")
        for name, tensor in tensors.items():
            if tuple(tensor.shape) != tuple(expected[name].shape):
                raise UserError(f"{source}: tensor {name} has shape {tuple(tensor.shape)}, "
                                f"expected {tuple(expected[name].shape)}")
        self.load_state_dict(dict(tensors), strict=False)

    # ----- inputs -----------------------------------------------------------------------------
    def embed(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """[B, T, d] text embeddings with the visual tokens in their slots (no modality token)."""
        ids = batch["input_ids"]
        embeds = self.lm.get_input_embeddings()(ids.clamp(min=0))
        slots = ids == VISUAL
        if slots.any():
            if self.front_end is None or batch.get("pixel_values") is None:
                raise UserError("the batch has visual-token slots but no pixel_values / front end")
            visual = self.front_end(batch["pixel_values"]).to(embeds.dtype)
            if visual.shape[0] * visual.shape[1] != int(slots.sum()):
                raise UserError(f"{visual.shape[0]} images x {visual.shape[1]} visual tokens do not fill the "
                                f"batch's {int(slots.sum())} visual slots")
            embeds = embeds.masked_scatter(slots[..., None], visual.reshape(-1, visual.shape[-1]))
        return embeds

    @staticmethod
    def modality_of(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if batch.get("modality") is not None:
            return batch["modality"].long()
        return (batch["input_ids"] == VISUAL).any(dim=1).long()

    def _mask(self, text_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        impl = getattr(self.lm.config, "_attn_implementation", "eager") or "eager"
        mask = modality_mask(text_mask)
        if impl == "sdpa":
            return mask
        if impl == "eager":
            return additive(mask, dtype)
        raise UserError(f"MM-Adapter training needs attn_implementation 'eager' or 'sdpa' (the modality token "
                        f"needs a custom 4D mask); the LM uses {impl!r}")

    # ----- forward and generation -------------------------------------------------------------
    def forward(self, batch: Mapping[str, torch.Tensor], labelled_only: bool = False):
        """HF causal-LM output; ``logits`` cover the text positions only (as ``input_ids``).

        ``labelled_only`` (the training loss, ``mma_loss``): the LM head runs on the positions
        whose next token is labelled only, ``logits`` are those rows [n, vocab] (``lm_loss``).
        """
        text = self.embed(batch)
        text_mask = batch["attention_mask"]
        labels = batch.get("labels")
        if self.merged:
            inputs = {"inputs_embeds": text, "attention_mask": text_mask}
        else:
            token = self.modality(self.modality_of(batch).to(text.device)).to(text.dtype)
            if labels is not None:
                labels = torch.cat([torch.full_like(labels[:, :1], IGNORE), labels], dim=1)
            set_routing(self.lm, "first", rows=text.shape[0])
            inputs = {"inputs_embeds": torch.cat([token, text], dim=1),
                      "attention_mask": self._mask(text_mask, text.dtype), "position_ids": modality_positions(text_mask)}
        if labelled_only:
            if labels is None:
                raise UserError("labelled_only needs the batch's labels")
            loss, logits = labelled_loss(self.lm, labels, lambda: self.lm(**inputs, use_cache=False))
            return CausalLMOutputWithPast(loss=loss, logits=logits)
        out = self.lm(**inputs, labels=labels, use_cache=False)
        if not self.merged:
            out.logits = out.logits[:, 1:]
        return out

    @torch.no_grad()
    def route(self, modality: torch.Tensor) -> None:
        """The modality token alone at position 0: every LLM adapter keeps its routing weights."""
        if self.merged:  # routing already folded into the weights
            return
        device = self.modality.weight.device
        token = self.modality(modality.long().to(device))
        set_routing(self.lm, "first", rows=token.shape[0])
        try:
            self.lm(inputs_embeds=token.to(self.lm.dtype), position_ids=torch.zeros_like(modality[:, None]).to(device),
                    use_cache=False)
        finally:
            set_routing(self.lm, "replay")

    @torch.no_grad()
    def generate_ids(self, batch: Mapping[str, torch.Tensor], max_new_tokens: int = 64, **kwargs) -> torch.Tensor:
        """Greedy (by default) decoding with the KV cache; returns only the new token ids.

        Prompts must be left-padded (``MMACollator.batch(..., left_pad=True)``).
        """
        self.route(self.modality_of(batch))
        settings = {"do_sample": False, "num_beams": 1, **kwargs}
        return self.lm.generate(inputs_embeds=self.embed(batch), attention_mask=batch["attention_mask"],
                                max_new_tokens=max_new_tokens, **settings)

    @torch.no_grad()
    def generate(self, batch: Mapping[str, torch.Tensor], tokenizer, max_new_tokens: int = 64, **kwargs) -> list[str]:
        """Decoded answers for a left-padded batch."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        ids = self.generate_ids(batch, max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, **kwargs)
        return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def mma_loss(model: MMAModel, batch) -> torch.Tensor:
    """The training loop's loss function: the LM's causal loss on answer tokens, the LM head on
    those positions only (``lm_loss``); through ``model(...)``, so a DDP wrapper syncs gradients."""
    return model(batch, labelled_only=True).loss
