"""Former folding entry points, kept for existing callers; the folding itself is in ``merge``."""

from __future__ import annotations

import copy

from torch import nn

from vltool.models.mma.merge import check_finite, fold_routed

__all__ = ["check_finite", "plain_lm"]


def plain_lm(lm: nn.Module, placement: str | None = None) -> nn.Module:
    """A folded COPY of ``lm`` (routing pass already run for one sample); ``lm`` keeps its adapters.

    ``placement`` is read from the wrappers themselves and only accepted for old callers.
    """
    check_finite(lm)
    new = copy.deepcopy(lm)
    fold_routed(new)
    return new.eval()
