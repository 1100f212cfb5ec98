"""LaVIN's MM-Adapter and its router (PAPERS.md 2).

A shared down-projection A (d -> 8, with bias), dropout, and two up-projections B and D (8 -> d,
group-wise with 2 groups, with bias, zero-initialised so training starts at the identity); no
activation, so the adapter is affine and can be folded into the next linear layer. The router
mixes B and D with ``softmax(Linear_{d->2}(h0) / t)``, ``h0`` being the modality token's hidden
state at this layer. With ``router=False`` only B is used (one shared adapter: the ablation).
"""

from __future__ import annotations

import torch
from torch import nn


class MMAdapter(nn.Module):
    """x -> x + s * (w0 * B(A x) + w1 * D(A x)), with routing weights w given per sample."""

    def __init__(self, dim: int, bottleneck: int = 8, groups: int = 2, scale: float = 1.0,
                 dropout: float = 0.1, router: bool = True, temperature: float = 10.0) -> None:
        super().__init__()
        if bottleneck % groups or dim % groups:
            raise ValueError(f"adapter groups ({groups}) must divide the bottleneck ({bottleneck}) and width ({dim})")
        self.dim, self.bottleneck, self.groups = dim, bottleneck, groups
        self.scale, self.temperature = scale, temperature
        self.down = nn.Linear(dim, bottleneck)
        self.drop = nn.Dropout(dropout)
        self.up_b = nn.Conv1d(bottleneck, dim, 1, groups=groups)
        self.up_d = nn.Conv1d(bottleneck, dim, 1, groups=groups) if router else None
        self.router = nn.Linear(dim, 2) if router else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.down.weight.is_meta:
            return
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        for up in (self.up_b, self.up_d):
            if up is not None:
                nn.init.zeros_(up.weight)
                nn.init.zeros_(up.bias)

    def routing(self, h0: torch.Tensor) -> torch.Tensor | None:
        """[B, d] modality-token states -> [B, 2] mixing weights (None without a router)."""
        if self.router is None:
            return None
        return torch.softmax(self.router(h0) / self.temperature, dim=-1)

    def _up(self, conv: nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
        return conv(h.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
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
            dense[g * out_per:(g + 1) * out_per, g * in_per:(g + 1) * in_per] = conv.weight[g * out_per:(g + 1) * out_per, :, 0]
        return dense

    def affine(self, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, c) with adapter(x) = P x + c for one routing-weight pair [2] (eval mode, no dropout)."""
        if self.router is None:
            mix, bias = self.dense_up(self.up_b), self.up_b.bias
        else:
            w0, w1 = weights[0], weights[1]
            mix = w0 * self.dense_up(self.up_b) + w1 * self.dense_up(self.up_d)
            bias = w0 * self.up_b.bias + w1 * self.up_d.bias
        eye = torch.eye(self.dim, dtype=mix.dtype, device=mix.device)
        return eye + self.scale * mix @ self.down.weight, self.scale * (mix @ self.down.bias + bias)


class AdaptedNorm(nn.Module):
    """A decoder layer's norm followed by an MM-Adapter: wraps the transformers module in place.

    ``mode``: "route" computes this layer's routing weights from position 0 (the modality token
    pass) and keeps them; "replay" applies the kept weights to every position (the main pass and
    each decoding step).
    """

    def __init__(self, norm: nn.Module, adapter: MMAdapter) -> None:
        super().__init__()
        self.norm = norm
        self.adapter = adapter
        self.mode = "replay"
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        flat = h.dim() == 2  # OPT flattens [B, T, d] to [B*T, d] before its FFN norm
        if self.mode == "route":
            self.weights = self.adapter.routing(h if flat else h[:, 0])  # the route pass has T = 1
        batch = self.weights.shape[0] if self.weights is not None else h.shape[0]
        if flat:
            return self.adapter(h.reshape(batch, -1, h.shape[-1]), self._weights(batch)).reshape(h.shape)
        return self.adapter(h, self._weights(h.shape[0]))

    def _weights(self, batch: int) -> torch.Tensor | None:
        """Routing weights for ``batch`` rows (beam search repeats each sample's rows)."""
        if self.weights is None or self.weights.shape[0] == batch:
            return self.weights
        return self.weights.repeat_interleave(batch // self.weights.shape[0], dim=0)
