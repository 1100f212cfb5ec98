"""Model FLOPs of one training step, derived from the configs and the padded sequence lengths.

Used for model FLOP utilisation (MFU = counted FLOPs / (step time x peak dense bf16 FLOP/s)) by
``bench/gpu_real_scale.py``, and checked on tiny models against ``torch.utils.flop_counter``
(``tests/models/test_flops.py``: every stage within 1%).

What is counted: every matrix product (linear layers, the patch-embedding convolution, the
adapters' grouped 1x1 convolutions, the attention scores ``Q K^T`` and ``P V``), at 2 FLOPs per
multiply-add, as the FLOP counter and the MFU convention of PaLM (Chowdhery et al. 2022) count
them. Norms, softmax, activations and the loss are not counted (a few % of the time, ~0 of the
FLOPs). The LM head runs on the labelled positions only (``vltool.models.lm_loss``: captions,
answers), not on the query slots, prompts or padding. Attention is counted as the dense ``s x s`` product, causal or not (what the counter
counts; a causal flash kernel skips about half of it, which at 64-300 tokens is < 3% of an LLM's
total).

Backward, per matrix product ``y = x W``: the input gradient costs one forward's FLOPs when ``x``
needs a gradient, the weight gradient one more when ``W`` trains. So:
- a frozen module that gradients flow THROUGH (the frozen LLM behind a trainable projector; a
  frozen ViT whose blocks hold MM-Adapters) costs 1x its forward in backward (input gradients
  only; autograd never forms weight gradients of tensors with ``requires_grad=False``), except the
  attention products, whose two operands both need gradients: 2x;
- a trainable module costs 2x its forward (1x where its input needs no gradient, e.g. the
  projector of the cached warm-up, whose input is a cached tensor);
- a frozen module nothing flows back into (the ViT in VPGTrans, the Q-Former in the warm-up)
  costs nothing in backward.
A step costs forward + backward; per sample divide by the micro-batch. At real scale with 32
queries + BOS + 32 text tokens, VPGTrans stage 2 on LLaMA-7B is about 2.3e12 FLOPs per sample:
the frozen LLM (forward + input-gradient backward, ~4 x 6.7e9 x 65) dominates, the ViT-g forward
(~2 x 1.0e9 x 257) is next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Peak dense (no 2:4 sparsity) bf16 tensor-core FLOP/s by device name fragment (datasheets).
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
    "RTX 4090": 165.0,
}


def peak_tflops(device_name: str) -> float | None:
    """The peak dense bf16 TFLOP/s of a device (longest matching name fragment), or None."""
    hits = [k for k in PEAK_BF16_TFLOPS if k.lower() in device_name.lower()]
    return PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else None


@dataclass
class Flops:
    """Forward and backward FLOPs of one micro-batch, per part (``parts[name] = (forward, backward)``)."""

    batch: int
    parts: dict[str, tuple[float, float]] = field(default_factory=dict)

    def add(self, name: str, forward: float, backward: float) -> None:
        f, b = self.parts.get(name, (0.0, 0.0))
        self.parts[name] = (f + forward, b + backward)

    @property
    def forward(self) -> float:
        return sum(f for f, _ in self.parts.values())

    @property
    def backward(self) -> float:
        return sum(b for _, b in self.parts.values())

    @property
    def total(self) -> float:
        return self.forward + self.backward

    @property
    def per_sample(self) -> float:
        return self.total / self.batch


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def _backward(forward: float, grad_in: bool, trains: bool) -> float:
    return forward * (int(grad_in) + int(trains))


def vit_flops(config: Any, images: int, grad_through: bool = False, adapter: dict | None = None) -> tuple[float, float]:
    """(forward, backward) of a ViT (BLIP-2's EVA ViT or CLIP) over ``images`` images.

    ``grad_through``: gradients flow through the blocks (trainable adapters inside); ``adapter``:
    ``{"bottleneck", "groups", "router"}`` of the MM-Adapter after each block's first norm.
    """
    d, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    patch, size, channels = config.patch_size, config.image_size, _get(config, "num_channels", default=3)
    patches = (size // patch) ** 2
    t = patches + 1  # [CLS]
    fwd = 2.0 * images * patches * channels * patch * patch * d  # patch embedding (no backward: pixels, frozen)
    bwd = 0.0
    linear = 2.0 * images * t * (4 * d * d + 2 * d * inter)
    attn = 4.0 * images * t * t * d
    for layer in range(layers):
        fwd += linear + attn
        if grad_through:
            # Block 1's adapter makes its output need a gradient; the blocks before it are none.
            bwd += linear + 2 * attn
        if adapter is not None:
            af, ab = adapter_flops(d, adapter, images, t, grad_in=layer > 0)
            fwd, bwd = fwd + af, bwd + ab
    return fwd, bwd


def adapter_flops(d: int, adapter: dict, rows: int, tokens: int, grad_in: bool) -> tuple[float, float]:
    """(forward, backward) of one trainable MM-Adapter over ``rows x tokens`` positions."""
    r, groups, router = adapter["bottleneck"], adapter["groups"], adapter.get("router", True)
    n = rows * tokens
    down = 2.0 * n * d * r
    up = 2.0 * n * d * (r // groups) * (2 if router else 1)
    route = 2.0 * rows * d * 2 if router else 0.0  # the router reads one position per row
    fwd = down + up + route
    # down and router: weight gradient (+ input gradient when x needs one); up: both (its input does).
    bwd = _backward(down + route, grad_in, True) + 2 * up
    return fwd, bwd


def qformer_flops(config: Any, queries: int, image_tokens: int, batch: int, trains: bool) -> tuple[float, float]:
    """(forward, backward) of BLIP-2's Q-Former on ``queries`` query tokens (no text)."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    enc = _get(config, "encoder_hidden_size", default=h)
    freq = _get(config, "cross_attention_frequency", default=2)
    q, p = batch * queries, batch * image_tokens
    fwd = bwd = 0.0
    for layer in range(layers):
        f = 2.0 * q * 4 * h * h + 4.0 * batch * queries * queries * h + 2.0 * q * 2 * h * inter
        if layer % freq == 0:
            f += 2.0 * q * 2 * h * h + 2.0 * p * 2 * enc * h + 4.0 * batch * queries * image_tokens * h
        fwd += f
    if trains:  # the query tokens and ln_vision train too, so every input needs a gradient
        bwd = 2 * fwd
    return fwd, bwd


def lm_flops(config: Any, batch: int, tokens: int, adapter: dict | None = None, placement: str = "attn",
             grad_in_first: bool = True, *, labelled: int) -> tuple[float, float]:
    """(forward, backward) of a frozen causal LM (OPT or LLaMA) over ``batch x tokens``, with an
    input gradient all through it (the trainable part sits before it), the LM head included on
    the ``labelled`` positions only (those whose next token has a label: ``lm_loss``).

    ``adapter``: MM-Adapters after the attention norm (``attn``), and the FFN norm (``block``).
    """
    d, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    heads = config.num_attention_heads
    head_dim = _get(config, "head_dim", default=d // heads)
    kv = _get(config, "num_key_value_heads", default=heads)
    inter = _get(config, "intermediate_size", "ffn_dim")
    n = batch * tokens
    llama = hasattr(config, "rms_norm_eps")
    if llama:
        per_token = d * heads * head_dim * 2 + d * kv * head_dim * 2 + 3 * d * inter
    else:
        per_token = 4 * d * d + 2 * d * inter
    linear = 2.0 * n * per_token
    attn = 4.0 * batch * tokens * tokens * heads * head_dim
    fwd = layers * (linear + attn)
    bwd = layers * (linear + 2 * attn)
    embed = _get(config, "word_embed_proj_dim", default=d)
    if not llama and embed != d:  # OPT-350M: project_in / project_out
        fwd += 2 * 2.0 * n * embed * d
        bwd += 2 * 2.0 * n * embed * d
    head = 2.0 * labelled * embed * vocab
    fwd += head
    bwd += head
    if adapter is not None:
        sites = 2 if placement == "block" else 1
        for layer in range(layers):
            for site in range(sites):
                af, ab = adapter_flops(d, adapter, batch, tokens, grad_in=grad_in_first or layer + site > 0)
                fwd, bwd = fwd + af, bwd + ab
    return fwd, bwd


VPGTRANS_STAGES = ("warmup", "warmup_cached", "stage2")


def vpgtrans_flops(config: Any, stage: str, batch: int, text_tokens: int, *, labelled: int) -> Flops:
    """One micro-batch of VPGTrans training on a ``Blip2Config``.

    ``stage``: ``warmup`` (projector trains; ViT + Q-Former run forward), ``warmup_cached``
    (projector from cached Q-Former outputs), ``stage2`` (Q-Former + queries + ln_vision +
    projector train). ``text_tokens``: the padded text length after the query slots (BOS + caption
    + end), so the LLM sees ``num_query_tokens + text_tokens`` positions. ``labelled``: the
    positions the LM head runs on, one per labelled caption token of the micro-batch
    (``lm_loss.labelled_count(labels)``).
    """
    if stage not in VPGTRANS_STAGES:
        raise ValueError(f"stage must be one of {VPGTRANS_STAGES}, not {stage!r}")
    vision, qformer, text = config.vision_config, config.qformer_config, config.text_config
    q = config.num_query_tokens
    out = Flops(batch)
    patches = (vision.image_size // vision.patch_size) ** 2 + 1
    if stage != "warmup_cached":
        out.add("vit", *vit_flops(vision, batch))
        out.add("qformer", *qformer_flops(qformer, q, patches, batch, trains=stage == "stage2"))
    proj = 2.0 * batch * q * qformer.hidden_size * text.hidden_size
    out.add("projector", proj, _backward(proj, stage == "stage2", True))
    out.add("llm", *lm_flops(text, batch, q + text_tokens, labelled=labelled))
    return out


def mma_flops(lm_config: Any, vision_config: Any | None, adapter: dict, placement: str, batch: int, tokens: int,
              images: int, visual_tokens: int = 6, vision_adapters: bool = True, projector_hidden: int = 128,
              *, labelled: int) -> Flops:
    """One micro-batch of tune-mma with LaVIN's CLIP front end.

    ``tokens``: the padded text length (visual slots included); the LLM runs ``tokens + 1`` with
    the modality token. ``images``: rows with an image (the others are text-only). ``labelled``:
    the labelled (answer) tokens of the micro-batch, where the LM head runs (the modality token
    before the text makes each one predictable, the first text slot included).
    """
    out = Flops(batch)
    if vision_config is not None and images:
        out.add("vit", *vit_flops(vision_config, images, grad_through=vision_adapters,
                                  adapter=adapter if vision_adapters else None))
        n = images * visual_tokens
        first = 2.0 * n * vision_config.hidden_size * projector_hidden
        second = 2.0 * n * projector_hidden * lm_config.hidden_size
        out.add("projector", first + second, _backward(first, vision_adapters, True) + 2 * second)
    out.add("llm", *lm_flops(lm_config, batch, tokens + 1, adapter, placement, labelled=labelled))
    return out
