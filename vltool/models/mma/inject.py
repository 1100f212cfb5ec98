"""Putting MM-Adapters into transformers' LLaMA and OPT decoders by wrapping their norms.

The adapter sits after the norm that feeds attention (``attn``) and, with ``block``, also after
the norm that feeds the FFN, exactly where LaVIN puts it. The wrapped modules keep their names,
so the folding in ``merge`` knows which linear layers read each adapter's output.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from vltool.errors import UserError
from vltool.models.mma.adapter import AdaptedNorm, MMAdapter


@dataclass(frozen=True)
class Site:
    """Where one adapter goes: the norm to wrap and the linear layers that read its output."""

    layer: int
    norm: str  # attribute of the decoder layer
    readers: tuple[str, ...]  # dotted paths (inside the decoder layer) of the linears after it


def decoder_layers(lm: nn.Module) -> tuple[str, nn.ModuleList]:
    """(family, layers) for a LLaMA- or OPT-style transformers causal LM."""
    base = getattr(lm, "model", None)
    if base is not None and hasattr(base, "layers"):
        return "llama", base.layers
    if base is not None and hasattr(base, "decoder") and hasattr(base.decoder, "layers"):
        if not getattr(lm.config, "do_layer_norm_before", True):
            raise UserError("MM-Adapters need a pre-LayerNorm OPT (do_layer_norm_before=True); OPT-350M is post-LN")
        return "opt", base.decoder.layers
    raise UserError(f"MM-Adapters support LLaMA- and OPT-style decoders; got {type(lm).__name__}")


def sites(lm: nn.Module, placement: str) -> list[Site]:
    family, layers = decoder_layers(lm)
    attn = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    if family == "llama":
        spots = [("input_layernorm", attn)]
        if placement == "block":
            spots.append(("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")))
    else:
        spots = [("self_attn_layer_norm", attn)]
        if placement == "block":
            spots.append(("final_layer_norm", ("fc1",)))
    return [Site(i, norm, readers) for i in range(len(layers)) for norm, readers in spots]


def inject(lm: nn.Module, placement: str = "attn", bottleneck: int = 8, groups: int = 2, scale: float = 1.0,
           dropout: float = 0.1, router: bool = True, temperature: float = 10.0) -> list[AdaptedNorm]:
    """Wrap every adapter site of ``lm`` in place; returns the wrappers in layer order."""
    _, layers = decoder_layers(lm)
    dim = lm.config.hidden_size
    wrapped = []
    for site in sites(lm, placement):
        layer = layers[site.layer]
        norm = getattr(layer, site.norm)
        if isinstance(norm, AdaptedNorm):
            raise UserError("this model already has MM-Adapters")
        device = next(norm.parameters()).device
        adapter = MMAdapter(dim, bottleneck, groups, scale, dropout, router, temperature)
        if device.type != "meta":
            adapter.to(device)
        wrapper = AdaptedNorm(norm, adapter)
        setattr(layer, site.norm, wrapper)
        wrapped.append(wrapper)
    return wrapped


def wrappers(lm: nn.Module) -> list[AdaptedNorm]:
    return [m for m in lm.modules() if isinstance(m, AdaptedNorm)]
