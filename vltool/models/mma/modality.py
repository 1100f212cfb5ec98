"""LaVIN's modality token and the attention mask that isolates it.

A learned embedding (0 = text-only, 1 = image) is put at sequence slot 0, before BOS. The mask
lets it see only itself and stops every other token seeing it, so its hidden state at every
layer, and with it every router's input, is a fixed function of (modality, layer). Its only
influence on the rest of the sequence is through the routing weights; that is what makes a
merged model (one weight set per modality, no token at all) exact.

Positions: the modality token gets position 0 and the text counts from 0 again at BOS. With
LLaMA's rotary positions this is the same computation as LaVIN's (token at 0, BOS at 1: only
differences of positions enter attention, and nobody attends across the modality token); with
OPT's learned absolute positions it keeps every text token at the position the LM was
pre-trained with, so a merged OPT sees exactly the positions it sees here.
"""

from __future__ import annotations

import torch
from torch import nn

TEXT, IMAGE = 0, 1
MODALITIES = {"text": TEXT, "image": IMAGE}


class ModalityToken(nn.Embedding):
    """``nn.Embedding(2, d)``: the modality token's input embedding (2*d trainable parameters)."""

    def __init__(self, dim: int) -> None:
        super().__init__(2, dim)

    def reset_parameters(self) -> None:
        """N(0, 1): LaVIN's ``nn.Embedding(2, d)`` keeps PyTorch's default init."""
        if not self.weight.is_meta:
            nn.init.normal_(self.weight, std=1.0)

    def forward(self, modality: torch.Tensor) -> torch.Tensor:
        """[B] modality codes -> [B, 1, d] embeddings, ready to prepend."""
        return super().forward(modality)[:, None, :]


def modality_mask(text_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] padding mask of the text -> [B, 1, T+1, T+1] boolean mask (True = may attend).

    Row 0 (the modality token) sees only itself; column 0 is hidden from every other row; text
    rows are causal over non-padding keys. Every row also sees itself, so no row is empty (a
    padding query then attends to itself only, and its output is never used).
    """
    length = text_mask.shape[1]
    keys = torch.cat([torch.zeros_like(text_mask[:, :1]), text_mask], dim=1).bool()  # [B, T+1]
    causal = torch.ones(length + 1, length + 1, dtype=torch.bool, device=text_mask.device).tril()
    mask = causal[None] & keys[:, None, :]
    mask = mask | torch.eye(length + 1, dtype=torch.bool, device=text_mask.device)[None]
    return mask[:, None]


def additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask as the additive float mask eager attention expects (0 or the dtype's min)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def modality_positions(text_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] padding mask -> [B, T+1] position ids: 0 for the modality token, text from 0 at BOS."""
    text = (text_mask.long().cumsum(-1) - 1).clamp(min=0)
    return torch.cat([torch.zeros_like(text[:, :1]), text], dim=1)
