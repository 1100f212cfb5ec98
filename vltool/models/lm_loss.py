"""Next-token cross-entropy with the LM head applied to the labelled positions only.

A causal LM's head maps every position to ``vocab`` logits, and transformers' loss upcasts them to
fp32, so ``[B, T, vocab]`` logits (plus their fp32 copy and gradient) are the largest activation
of a training step, though most positions carry no label: VPGTrans' 32 query slots and BOS, an
MMA batch's modality token and 100-400 prompt tokens. Here the head sees only the rows whose NEXT
token is labelled (the standard causal shift), so the logits are ``[n_labelled, vocab]``, and the
loss is their mean fp32 cross-entropy: exactly transformers' ``ForCausalLMLoss`` (mean over the
non-ignored tokens), with the same gradients.

How: the model runs its own ``forward`` unchanged (BLIP-2's image features and placeholders, the
MMA routing, masks and positions; any decoder, OPT's ``project_out`` included) with no labels,
while a forward pre-hook on the LM head (``get_output_embeddings()``) replaces the head's input
``[B, T, d]`` with its labelled rows ``[n, d]``. Going through the outer ``forward`` rather than
calling ``lm.base_model`` directly matters under DDP: a forward that bypasses the wrapper never
arms its gradient all-reduce, and the ranks silently drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

IGNORE = -100


def next_token_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(``keep`` [B, T] bool: positions whose next token is labelled, their targets [n]).

    Position t predicts token t + 1, so ``keep[:, t] = labels[:, t + 1] != IGNORE`` and the last
    position is never kept (what ``ForCausalLMLoss``'s pad-and-shift does).
    """
    shifted = nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE)
    keep = shifted != IGNORE
    return keep, shifted[keep]


def labelled_count(labels: torch.Tensor) -> int:
    """How many rows the LM head sees for these (unshifted, LM-aligned) labels."""
    return int((labels[:, 1:] != IGNORE).sum())


@contextmanager
def head_on_rows(lm: nn.Module, keep: torch.Tensor) -> Iterator[None]:
    """While inside, ``lm``'s head maps ``hidden[keep]`` ([n, d]) instead of ``hidden`` ([B, T, d])."""
    head = lm.get_output_embeddings()

    def gather(_module: nn.Module, args: tuple):
        hidden = args[0]
        if hidden.shape[:2] != keep.shape:
            raise RuntimeError(f"the LM head got hidden states {tuple(hidden.shape)}; the labels are {tuple(keep.shape)}")
        return (hidden[keep.to(hidden.device)], *args[1:])

    handle = head.register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()


def labelled_loss(lm: nn.Module, labels: torch.Tensor, run) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean fp32 cross-entropy over the labelled next tokens, their logits [n, vocab]).

    ``labels`` [B, T] are aligned with the LM's input sequence (as transformers takes them);
    ``run()`` runs the model WITHOUT labels and returns its output, whose ``logits`` then hold
    the labelled rows only.
    """
    keep, targets = next_token_targets(labels)
    with head_on_rows(lm, keep):
        logits = run().logits
    return nn.functional.cross_entropy(logits.float(), targets.to(logits.device), ignore_index=IGNORE), logits


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP / DeepSpeed wrapper (hooks go on it; the call still goes through the wrapper)."""
    return getattr(model, "module", model)
