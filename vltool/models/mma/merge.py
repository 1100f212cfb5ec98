"""Folding MM-Adapters into the linear layers that read them (RepAdapter-style re-parameterisation).

For one modality every LLM router's input is a constant (the modality token sees only itself),
so each adapter is a fixed affine map ``x -> x + U A x + c`` and a following linear layer
``W x + b`` becomes ``W' = W + (W U) A``, ``b' = b + W c``: q/k/v after the attention norm, and for
``block`` placement the FFN input (LLaMA gate/up, OPT fc1) after the FFN norm. The wrapped norms
go back to the plain transformers norms, so the result is a stock LlamaForCausalLM /
OPTForCausalLM that plain transformers saves and loads. LLaMA's q/k/v and FFN have no biases,
so the merged config sets ``attention_bias`` / ``mlp_bias`` (o_proj / down_proj get zero biases,
as those flags give every projection one).

The merged model has no modality token: its text positions compute what the adapted model's
text positions compute, because the token's only effect on them was through the routing weights.
Vision adapters route per image (see ``inject.py``) and cannot be folded; ``require_foldable_front_end``
says so before a stage writes a BLIP-2 folder.

Safety: every tensor that enters the fold is checked for NaN/inf first, and the folded weights
again after casting back to the model's dtype. ``config.vltool_merged`` marks the result, so
merging a merged model says so and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vltool.errors import UserError
from vltool.models.mma.adapter import AdaptedNorm
from vltool.models.mma.inject import ATTN_READERS, decoder_layers, wrappers
from vltool.models.mma.modality import MODALITIES

MARKER = "vltool_merged"


@dataclass
class MergeResult:
    lm: nn.Module  # the plain transformers causal LM
    changed: bool  # False: it was merged already, nothing was done
    message: str


def merged_marker(model_or_config) -> dict | None:
    """The ``vltool_merged`` record of a merged LM (or its config), None for any other model."""
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, MARKER, None)


def check_finite(tensors: dict[str, torch.Tensor] | nn.Module, what: str = "model") -> None:
    """Refuse to fold NaN/inf: name the first bad tensor."""
    items = tensors.named_parameters() if isinstance(tensors, nn.Module) else tensors.items()
    for name, tensor in items:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"refusing to merge: {what} tensor {name} has NaN or inf values")


def _spots(family: str) -> list[tuple[str, tuple[str, ...], str]]:
    """(norm attribute, readers, config bias flag) of every foldable site of a decoder layer."""
    if family == "llama":
        return [("input_layernorm", ATTN_READERS, "attention_bias"),
                ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"), "mlp_bias")]
    return [("self_attn_layer_norm", ATTN_READERS, ""), ("final_layer_norm", ("fc1",), "")]


# The projections each LLaMA bias flag gives a bias to (all of them get one in a reloaded model).
_FLAG_LINEARS = {"attention_bias": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
                 "mlp_bias": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}


def _module(root: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        root = getattr(root, part)
    return root


@torch.no_grad()
def _fold_into(linear: nn.Linear, u: torch.Tensor, a: torch.Tensor, c: torch.Tensor, name: str) -> None:
    """W' = W + (W U) A, b' = b + W c, computed in float64 and cast back."""
    weight = linear.weight.double()
    bias = linear.bias.double() if linear.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64,
                                                                             device=weight.device)
    new_weight = (weight + (weight @ u) @ a).to(linear.weight.dtype)
    new_bias = (bias + weight @ c).to(linear.weight.dtype)
    check_finite({f"{name}.weight": new_weight, f"{name}.bias": new_bias}, "folded")
    linear.weight.copy_(new_weight)
    if linear.bias is None:
        linear.bias = nn.Parameter(new_bias, requires_grad=False)
    else:
        linear.bias.copy_(new_bias)


@torch.no_grad()
def fold_routed(lm: nn.Module) -> dict[str, object]:
    """Fold every adapter of ``lm`` IN PLACE with the routing weights its wrappers hold.

    Call after the routing pass for one sample (``MMAModel.route``), in eval mode. Returns what
    was folded (for the marker). The wrapped norms are replaced by the original norms.
    """
    family, layers = decoder_layers(lm)
    todo = [(index, layer, norm_attr, readers, flag) for index, layer in enumerate(layers)
            for norm_attr, readers, flag in _spots(family) if isinstance(getattr(layer, norm_attr), AdaptedNorm)]
    for index, layer, norm_attr, readers, flag in todo:  # validate everything before changing anything
        wrapper = getattr(layer, norm_attr)
        if wrapper.adapter.router is not None and (wrapper.weights is None or wrapper.weights.shape[0] != 1):
            raise RuntimeError("fold_routed needs the routing pass for exactly one sample first")
        if flag and not hasattr(lm.config, flag):
            raise UserError(f"cannot merge: {type(lm.config).__name__} has no {flag!r} to add the folded biases")
        for reader in readers:
            if not flag and _module(layer, reader).bias is None:
                raise UserError(f"cannot merge: {type(lm).__name__} layer {index} {reader} has no bias and its "
                                f"config cannot add one (OPT enable_bias=False)")
    flags, placement = set(), "attn"
    for index, layer, norm_attr, readers, flag in todo:
        wrapper = getattr(layer, norm_attr)
        weights = wrapper.weights[0] if wrapper.adapter.router is not None else None
        u, a, c = (t.double() for t in wrapper.adapter.low_rank(weights))
        for reader in readers:
            linear = _module(layer, reader)
            device = linear.weight.device
            _fold_into(linear, u.to(device), a.to(device), c.to(device), f"layer {index} {reader}")
        setattr(layer, norm_attr, wrapper.norm)
        if flag:
            flags.add(flag)
        if norm_attr in ("post_attention_layernorm", "final_layer_norm"):
            placement = "block"
    folded = len(todo)
    for flag in sorted(flags):
        setattr(lm.config, flag, True)
        for layer in layers:  # a reloaded model gives every projection under this flag a bias
            for path in _FLAG_LINEARS[flag]:
                linear = _module(layer, path)
                if linear.bias is None:
                    linear.bias = nn.Parameter(torch.zeros(linear.out_features, dtype=linear.weight.dtype,
                                                           device=linear.weight.device), requires_grad=False)
    return {"adapters": folded, "placement": placement, "bias_flags": sorted(flags)}


def require_foldable_front_end(front_end: nn.Module | None) -> None:
    """Refuse vision adapters: they route per image, so no fixed weights can replace them."""
    if front_end is not None and wrappers(front_end):
        raise UserError("cannot merge vision MM-Adapters: they route each image from its own [CLS] token, so they "
                        "are not a fixed linear map; train with adapter.vision=false for a mergeable BLIP-2 "
                        "folder, or keep using the adapters artifact")


@torch.no_grad()
def merge_lm(model, modality: str | int) -> MergeResult:
    """Fold ``model``'s (an MMAModel) LLM adapters for one modality, in place; returns the plain LM.

    ``model`` afterwards is a merged MMAModel (text runs without the modality token).
    """
    code = MODALITIES.get(modality, -1) if isinstance(modality, str) else int(modality)
    if code not in MODALITIES.values():
        raise UserError(f"--modality {modality!r}: expected one of {sorted(MODALITIES)}")
    name = {v: k for k, v in MODALITIES.items()}[code]
    if model.merged:
        marker = merged_marker(model.lm) or {}
        return MergeResult(model.lm, False, f"already merged (modality {marker.get('modality', 'unknown')}); "
                                            "nothing to do")
    check_finite(model.trainable_state(), "adapter")
    check_finite({n: p for n, p in model.lm.named_parameters() if p.is_floating_point()}, "LLM")
    model.eval()
    model.route(torch.tensor([code]))
    record = fold_routed(model.lm)
    setattr(model.lm.config, MARKER, {"modality": name, **record})
    return MergeResult(model.lm, True, f"folded {record['adapters']} adapters for modality {name}")
