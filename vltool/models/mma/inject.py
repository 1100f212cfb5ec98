"""Putting MM-Adapters into transformers models by wrapping their norms (no copied layer code).

LLM (LLaMA, OPT): the adapter sits after the norm that feeds attention (``attn`` placement) and,
with ``block``, also after the norm that feeds the FFN, exactly where LaVIN puts it. The wrapped
modules keep their attribute names, so ``merge`` knows which linear layers read each adapter's
output (``Site.readers``).

Vision encoders (CLIP ViT, BLIP-2 ViT): one adapter per block after ``layer_norm1`` (LaVIN's
``ln_1``), before attention. There is no modality token there: every input is an image. Each
vision adapter keeps its router (the LaVIN-7B count of 20,490 per CLIP block includes it) and
routes each image from its own [CLS] token after that block's norm (the paper's intent). LaVIN's
code (github.com/luogen1996/LaVIN@dd0a1bf ``lavin/mm_adapter.py``, ``RepAdapter_Router.forward``)
writes ``x[:, 0]``, but its OpenAI CLIP runs sequence-first (``clip/model.py``: ``NLD -> LND``), so
``x`` is [tokens, images, width] there and ``x[:, 0]`` is image 0's row: token position l of EVERY
image in the batch is routed with the weights computed from image 0's token l (the 1x1 convolutions
then take the token axis as their batch axis). No image is routed from its [CLS]; every image but
the first is routed from another image, and a sample's features depend on its batch neighbours.
vltool keeps per-image [CLS] routing (a documented departure, README "What is implemented").
Consequence: vision routing depends on the image, so vision adapters cannot be folded into a plain
ViT (``merge`` says so); LLM adapters can.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from vltool.errors import UserError
from vltool.models.mma.adapter import AdaptedNorm, MMAdapter, RoutingMode

ATTN_READERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


@dataclass(frozen=True)
class AdapterSettings:
    """The adapter hyper-parameters shared by every site (recipe ``adapter:`` section)."""

    bottleneck: int = 8
    groups: int = 2
    scale: float = 1.0
    dropout: float = 0.1
    router: bool = True
    temperature: float = 10.0

    def build(self, dim: int) -> MMAdapter:
        return MMAdapter(dim, self.bottleneck, self.groups, self.scale, self.dropout, self.router, self.temperature)


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
    """Every adapter site of ``lm`` for ``attn`` or ``block`` placement, in layer order."""
    if placement not in ("attn", "block"):
        raise UserError(f"adapter placement {placement!r}: expected 'attn' or 'block'")
    family, layers = decoder_layers(lm)
    if family == "llama":
        spots = [("input_layernorm", ATTN_READERS)]
        if placement == "block":
            spots.append(("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")))
    else:
        spots = [("self_attn_layer_norm", ATTN_READERS)]
        if placement == "block":
            spots.append(("final_layer_norm", ("fc1",)))
    return [Site(i, norm, readers) for i in range(len(layers)) for norm, readers in spots]


def _wrap(owner: nn.Module, attr: str, settings: AdapterSettings, dim: int, mode: RoutingMode) -> AdaptedNorm:
    norm = getattr(owner, attr)
    if isinstance(norm, AdaptedNorm):
        raise UserError("this model already has MM-Adapters")
    param = next(norm.parameters(), None)
    adapter = settings.build(dim)
    if param is not None and param.device.type != "meta":
        adapter.to(param.device)  # adapters stay fp32 even on half-precision frozen weights
    wrapper = AdaptedNorm(norm, adapter, mode)
    setattr(owner, attr, wrapper)
    return wrapper


def inject(lm: nn.Module, placement: str = "attn", settings: AdapterSettings | None = None,
           **kwargs) -> list[AdaptedNorm]:
    """Wrap every adapter site of a causal LM in place; returns the wrappers in layer order.

    ``kwargs`` (bottleneck, groups, scale, dropout, router, temperature) are a shorthand for
    ``settings``.
    """
    settings = settings or AdapterSettings(**kwargs)
    _, layers = decoder_layers(lm)
    dim = lm.config.hidden_size
    return [_wrap(layers[s.layer], s.norm, settings, dim, "first") for s in sites(lm, placement)]


def vision_layers(vision: nn.Module) -> nn.ModuleList:
    """The encoder blocks of a CLIPVisionModel / Blip2VisionModel (or their inner transformer)."""
    inner = getattr(vision, "vision_model", vision)  # CLIPVisionModel wraps a CLIPVisionTransformer
    encoder = getattr(inner, "encoder", None)
    layers = getattr(encoder, "layers", None)
    if layers is None or not all(hasattr(layer, "layer_norm1") for layer in layers):
        raise UserError(f"vision MM-Adapters support CLIP and BLIP-2 ViTs; got {type(vision).__name__}")
    return layers


def inject_vision(vision: nn.Module, settings: AdapterSettings | None = None, **kwargs) -> list[AdaptedNorm]:
    """One adapter after ``layer_norm1`` of every ViT block, routed per image from its [CLS] token."""
    settings = settings or AdapterSettings(**kwargs)
    dim = vision.config.hidden_size
    return [_wrap(layer, "layer_norm1", settings, dim, "first") for layer in vision_layers(vision)]


def wrappers(module: nn.Module) -> list[AdaptedNorm]:
    """Every adapter wrapper under ``module``, in module order."""
    return [m for m in module.modules() if isinstance(m, AdaptedNorm)]


def set_routing(lm: nn.Module, mode: RoutingMode, rows: int | None = None) -> None:
    """Switch every LLM wrapper between routing from position 0 and replaying kept weights."""
    for w in wrappers(lm):
        w.mode, w.rows = mode, rows
