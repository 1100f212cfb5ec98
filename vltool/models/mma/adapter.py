"""LaVIN's MM-Adapter, its router, and the wrapper that puts one after a transformers norm.

The adapter (PAPERS.md 2): a shared down-projection A (d -> r, with bias), dropout, and two
up-projections B and D (r -> d, group-wise with 2 groups, with bias, zero-initialised so training
starts at the identity). No activation: the adapter is affine, which is what lets ``merge`` fold
it into the linear layers that read its output. Output ``x + s * (w0 * B(A x) + w1 * D(A x))``.

The routing weights ``w = softmax(Linear_{d->2}(h0) / t)`` come from ``h0``, the normed hidden
state at position 0 of each sequence: the modality token in the LLM (a function of modality and
layer only, since nobody else is visible to it), the [CLS] token in a vision encoder (see
``inject.py`` for why the vision side routes per image). With ``router=False`` only B exists:
the single-adapter ablation.

Parameter count per adapter, which the LaVIN-7B known answer pins down (d = 4096, r = 8):
A 4096*8 + 8, B and D each 2 groups of (4 -> 2048) = 4096*4 weights + 4096 biases, router
4096*2 + 2: 81,930 per LLM layer; 20,490 per CLIP ViT-L/14 block (d = 1024).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

RoutingMode = Literal["first", "replay"]


class Router(nn.Linear):
    """``softmax(Linear_{d->2}(h0) / t)``; a Linear subclass so its tensors are ``router.weight/bias``."""

    def __init__(self, dim: int, temperature: float = 10.0) -> None:
        super().__init__(dim, 2)
        self.temperature = temperature

    def weights(self, h0: torch.Tensor) -> torch.Tensor:
        """[B, d] position-0 states -> [B, 2] mixing weights (rows sum to 1)."""
        return torch.softmax(self(h0) / self.temperature, dim=-1)


class MMAdapter(nn.Module):
    """x -> x + s * (w0 * B(A x) + w1 * D(A x)), with routing weights w given per sample."""

    def __init__(self, dim: int, bottleneck: int = 8, groups: int = 2, scale: float = 1.0,
                 dropout: float = 0.1, router: bool = True, temperature: float = 10.0) -> None:
        super().__init__()
        if bottleneck % groups or dim % groups:
            raise ValueError(f"adapter groups ({groups}) must divide the bottleneck ({bottleneck}) and width ({dim})")
        self.dim, self.bottleneck, self.groups, self.scale = dim, bottleneck, groups, scale
        self.down = nn.Linear(dim, bottleneck)
        self.drop = nn.Dropout(dropout)
        # A grouped 1x1 convolution is exactly a block-diagonal linear layer with 2 groups' weights.
        self.up_b = nn.Conv1d(bottleneck, dim, 1, groups=groups)
        self.up_d = nn.Conv1d(bottleneck, dim, 1, groups=groups) if router else None
        self.router = Router(dim, temperature) if router else None
        self.reset_parameters()

    @property
    def temperature(self) -> float:
        return self.router.temperature if self.router is not None else 1.0

    def reset_parameters(self) -> None:
        if self.down.weight.is_meta:  # meta-device instantiation for --dry-run: nothing to fill
            return
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        for up in (self.up_b, self.up_d):
            if up is not None:
                nn.init.zeros_(up.weight)
                nn.init.zeros_(up.bias)

    def routing(self, h0: torch.Tensor) -> torch.Tensor | None:
        """[B, d] position-0 states -> [B, 2] mixing weights (None without a router)."""
        return None if self.router is None else self.router.weights(h0)

    @staticmethod
    def _up(conv: nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
        return conv(h.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """``x`` [B, T, d]; ``weights`` [B, 2] (ignored without a router)."""
        h = self.drop(self.down(x))
        b = self._up(self.up_b, h)
        if self.router is None:
            return x + self.scale * b
        w = weights.to(x.dtype)
        d = self._up(self.up_d, h)
        return x + self.scale * (w[:, 0, None, None] * b + w[:, 1, None, None] * d)

    def dense_up(self, conv: nn.Conv1d) -> torch.Tensor:
        """The group-wise 1x1 convolution as a dense block-diagonal [d, r] matrix."""
        dense = torch.zeros(self.dim, self.bottleneck, dtype=conv.weight.dtype, device=conv.weight.device)
        out_per, in_per = self.dim // self.groups, self.bottleneck // self.groups
        for g in range(self.groups):
            rows, cols = slice(g * out_per, (g + 1) * out_per), slice(g * in_per, (g + 1) * in_per)
            dense[rows, cols] = conv.weight[rows, :, 0]
        return dense

    def low_rank(self, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(U [d, r], A [r, d], c [d]) with adapter(x) = x + U A x + c, for one routing pair [2].

        Eval mode (no dropout). With M = w0 B + w1 D (dense block-diagonal) and
        b_up = w0 b_B + w1 b_D: x + s (M (A x + a) + b_up) = x + (s M) A x + s (M a + b_up).
        Folding into a following ``W x + b`` then costs O(d r) per output row: W' = W + (W U) A.
        """
        if self.router is None:
            mix, bias = self.dense_up(self.up_b), self.up_b.bias
        else:
            w0, w1 = weights[0].to(self.down.weight.dtype), weights[1].to(self.down.weight.dtype)
            mix = w0 * self.dense_up(self.up_b) + w1 * self.dense_up(self.up_d)
            bias = w0 * self.up_b.bias + w1 * self.up_d.bias
        return self.scale * mix, self.down.weight, self.scale * (mix @ self.down.bias + bias)

    def affine(self, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, c) with adapter(x) = P x + c (dense; for tests and small models)."""
        u, a, c = self.low_rank(weights)
        return torch.eye(self.dim, dtype=u.dtype, device=u.device) + u @ a, c


class AdaptedNorm(nn.Module):
    """A transformers norm followed by an MM-Adapter; replaces the norm attribute in place.

    ``mode``: ``"first"`` routes each sequence from its own position 0 (the modality token in a
    full LLM sequence, or the modality token alone in the routing pass; the [CLS] token in a
    vision encoder) and keeps the weights; ``"replay"`` applies the kept weights to every
    position, which is how KV-cached decoding steps (that no longer contain position 0) are
    routed. ``rows`` is the batch size, needed only where the caller flattens [B, T, d] to
    [B*T, d] before the norm (OPT's FFN norm).
    """

    def __init__(self, norm: nn.Module, adapter: MMAdapter, mode: RoutingMode = "first") -> None:
        super().__init__()
        self.norm = norm
        self.adapter = adapter
        self.mode: RoutingMode = mode
        self.rows: int | None = None
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        flat = h.dim() == 2
        if flat:
            batch = self.rows if self.mode == "first" else self.weights.shape[0] if self.weights is not None else 1
            if batch is None:
                raise RuntimeError("a flattened input needs AdaptedNorm.rows (set by set_routing)")
            seq = h.reshape(batch, -1, h.shape[-1])
        else:
            seq = h
        param = self.adapter.down.weight
        seq_in = seq.to(param.dtype)  # fp32 adapters on half-precision frozen weights, as LaVIN trains
        if self.mode == "first" and self.adapter.router is not None:
            self.weights = self.adapter.routing(seq_in[:, 0])
        out = self.adapter(seq_in, self._weights(seq.shape[0])).to(h.dtype)
        return out.reshape(h.shape) if flat else out

    def _weights(self, batch: int) -> torch.Tensor | None:
        """Routing weights for ``batch`` rows (beam search repeats each sample's rows)."""
        if self.adapter.router is None:
            return None
        if self.weights is None:
            raise RuntimeError("replay routing without weights: run the modality-token pass first")
        if self.weights.shape[0] == batch:
            return self.weights
        return self.weights.repeat_interleave(batch // self.weights.shape[0], dim=0)
