"""Initialise the target projector from the source projector and the word converter (VPGTrans).

The source projector maps Q-Former outputs into the source LLM's input-embedding space; the word
converter ``g`` maps that space onto the target LLM's. Composing the two affine maps gives one
Linear of the target's shape, so stage 1 starts from ``proj_t(x) = g(proj_s(x))``:
``W_t = W_g @ W_s`` and ``b_t = W_g @ b_s + b_g`` (PAPERS.md 1; the order the official code uses).
The product is taken in float64 so the merge adds no error of its own beyond the final cast.
"""

from __future__ import annotations

import torch
from torch import nn


def merge_projector(converter: nn.Linear, source_projector: nn.Linear) -> nn.Linear:
    """A new Linear(d_qformer -> d_tgt) equal to ``converter(source_projector(x))``."""
    if converter.in_features != source_projector.out_features:
        raise ValueError(f"the word converter takes {converter.in_features}-wide embeddings but the source projector "
                         f"outputs {source_projector.out_features}")
    device = source_projector.weight.device
    w_s = source_projector.weight.detach().double()
    w_g = converter.weight.detach().to(device, torch.float64)
    b_g = (converter.bias.detach().to(device, torch.float64) if converter.bias is not None
           else torch.zeros(w_g.shape[0], dtype=torch.float64, device=device))
    b_s = (source_projector.bias.detach().double() if source_projector.bias is not None
           else torch.zeros(w_s.shape[0], dtype=torch.float64, device=device))
    merged = nn.Linear(source_projector.in_features, converter.out_features,
                       dtype=source_projector.weight.dtype, device=device)
    with torch.no_grad():
        merged.weight.copy_(w_g @ w_s)
        merged.bias.copy_(w_g @ b_s + b_g)
    return merged
