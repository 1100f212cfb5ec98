"""Folding MM-Adapters into the linear layers that read them (RepAdapter-style re-parameterisation).

For one modality the routing weights are constants per layer, so each adapter is an affine map
``x -> P x + c`` and a following linear layer ``W x + b`` becomes ``(W P) x + (W c + b)``. The
result is a plain transformers model (LLaMA gets ``attention_bias`` / ``mlp_bias`` because its
q/k/v and FFN inputs have no bias) with no adapter code left in it.
"""

from __future__ import annotations

import torch
from torch import nn

from vltool.errors import UserError
from vltool.models.mma.inject import decoder_layers, sites


def _module(root: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def check_finite(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise UserError(f"refusing to merge: tensor {name} has NaN or inf values")


@torch.no_grad()
def folded_state(lm: nn.Module, placement: str) -> tuple[dict[str, torch.Tensor], dict[str, bool]]:
    """State dict of the plain LM with every adapter folded in, and the bias flags it needs.

    Call after ``MMAModel.route`` for a single-sample batch of the chosen modality, in eval mode.
    """
    family, layers = decoder_layers(lm)
    state: dict[str, torch.Tensor] = {}
    flags = {"attention_bias": False, "mlp_bias": False}
    prefix = "model.layers" if family == "llama" else "model.decoder.layers"
    for site in sites(lm, placement):
        layer = layers[site.layer]
        wrapper = getattr(layer, site.norm)
        weights = wrapper.weights[0] if wrapper.weights is not None else None
        P, c = (t.double() for t in wrapper.adapter.affine(weights))
        for reader in site.readers:
            linear = _module(layer, reader)
            W = linear.weight.double()
            b = linear.bias.double() if linear.bias is not None else torch.zeros(W.shape[0], dtype=torch.float64)
            key = f"{prefix}.{site.layer}.{reader}"
            state[f"{key}.weight"] = (W @ P.to(W.device)).to(linear.weight.dtype)
            state[f"{key}.bias"] = (W @ c.to(W.device) + b).to(linear.weight.dtype)
            if family == "llama":
                flags["mlp_bias" if reader.startswith("mlp.") else "attention_bias"] = True
    return state, flags


def plain_lm(lm: nn.Module, placement: str) -> nn.Module:
    """A new transformers LM of the same class with the adapters folded in (biases added)."""
    check_finite(lm)
    folded, flags = folded_state(lm, placement)
    config = lm.config.__class__(**{**lm.config.to_dict(), **{k: v for k, v in flags.items() if v}})
    new = lm.__class__(config)
    base = {}
    for name, tensor in lm.state_dict().items():
        clean = name.replace(".norm.", ".", 1) if ".adapter." not in name else None
        if clean is None:
            continue
        base[_unwrap(name)] = tensor
    base.update(folded)
    missing, unexpected = new.load_state_dict(base, strict=False)
    with torch.no_grad():  # biases the flags add where no adapter feeds (LLaMA's o_proj, down_proj): zero
        for name in [m for m in missing if m.endswith(".bias")]:
            _module(new, name.rsplit(".", 1)[0]).bias.zero_()
    missing = [m for m in missing if not m.endswith(".bias")]
    missing = [m for m in missing if not m.endswith("lm_head.weight") or not config.tie_word_embeddings]
    if missing or unexpected:
        raise UserError(f"merge produced a mismatched state (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return new.eval()


def _unwrap(name: str) -> str:
    """``...input_layernorm.norm.weight`` (wrapped) -> ``...input_layernorm.weight``."""
    for norm in ("input_layernorm", "post_attention_layernorm", "self_attn_layer_norm", "final_layer_norm"):
        name = name.replace(f"{norm}.norm.", f"{norm}.")
    return name
