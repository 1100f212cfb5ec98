"""Memory levers for large frozen models: activation (gradient) checkpointing, quantised frozen LLMs.

``train.gradient_checkpointing: true`` recomputes the activations of the causal LM's layers (and
of a vision encoder whose blocks hold trainable MM-Adapters) during backward instead of keeping
them: activation memory of those layers drops from ``s b h (34 + 5 a s / h)`` bytes-at-2 per
layer (Korthikanti et al. 2022) to the layer input ``2 s b h`` bytes (bf16), for about one more
forward of those layers in time. It uses transformers' own ``activation_checkpointing_enable`` (``gradient_checkpointing_enable``)
with ``use_reentrant=False``: PyTorch's non-reentrant checkpoint propagates gradients to inputs
even when no parameter inside the checkpointed layer trains, which is exactly the VPGTrans
case (the frozen LLM's layers; the gradient is for the projector/Q-Former BEFORE them). The
reentrant variant needs ``enable_input_require_grads`` tricks and silently drops those
gradients when the first input does not require grad; vltool never uses it. Dropout inside a
checkpointed layer replays its RNG state, so gradients equal the un-checkpointed ones
(``tests/models/test_memory_levers.py``).

``train.llm_quantization: int8 | nf4`` keeps the frozen LLM's decoder linear layers in 8 or 4
bits with bitsandbytes (LLM.int8() / QLoRA's NF4 with bf16 compute), as transformers'
``load_in_8bit`` / ``load_in_4bit`` do (embeddings, norms and the LM head stay as they are).
Gradients still flow to the inputs of those layers (QLoRA trains through them the same way),
so the projector / Q-Former / adapters before and inside the LLM train as before, on a
slightly perturbed frozen LLM: the method stays the same, the frozen function does not stay
bit-identical (the LLM.int8 and NF4 papers report no measurable loss in quality). bitsandbytes
needs a CUDA GPU: on CPU the option is refused with one line. The dry-run shows its memory
(weights at 1 or ~0.52 bytes a parameter, NF4's per-64-value scales included).

``train.frozen_dtype: auto | fp32 | bf16 | fp16`` is the dtype the frozen towers (every causal LM
and vision encoder) keep their weight matrices in while training. ``auto`` follows the run's
mixed precision: bf16 under bf16 autocast, fp16 under fp16, fp32 without mixed precision. Under
autocast every matrix multiply already reads those weights in the compute dtype, so storing
them in it changes no product; it halves their memory (LLaMA-7B: 25 GiB -> 12.6 GiB) and stops
autocast from re-casting every frozen weight on every forward (a full read of the fp32 weights
and a write of a bf16 copy, per micro-batch). BLIP-2 and LaVIN keep their frozen ViT and LLM in
fp16 the same way. What trains stays fp32 (AdamW's master weights), and so do 1-D tensors
(norms, biases: a few MiB, and ``ln_vision``, which stage 2 trains) and any module that is not a
tower (the Q-Former, frozen during the warm-up, is saved from the model and must keep its bits).
Under FSDP and DeepSpeed ``auto`` means fp32: they hold parameters in flat shards of one dtype
and apply their own mixed-precision policy.
"""

from __future__ import annotations

import torch
from torch import nn

from vltool.errors import UserError

QUANTIZATION_BYTES = {"none": None, "int8": 1.0, "nf4": 0.5 + 0.5 / 64 * 2}  # nf4: 64-value blocks, fp32 absmax


def _is_causal_lm(module: nn.Module) -> bool:
    return hasattr(module, "lm_head") or type(module).__name__.endswith("ForCausalLM")


def _is_vision_encoder(module: nn.Module) -> bool:
    model_type = getattr(getattr(module, "config", None), "model_type", "") or ""
    return "vision" in model_type


def checkpoint_targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The transformers sub-models whose layers ``train.gradient_checkpointing`` recomputes:
    every causal LM (the loss is behind it, so backward passes through all its layers) and every
    vision encoder with trainable parameters inside (MM-Adapters in its blocks). The Q-Former
    (32 query tokens, its activations are small) and a fully frozen ViT (nothing flows back into
    it) are left alone."""
    from transformers import PreTrainedModel

    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if not isinstance(module, PreTrainedModel) or not getattr(module, "supports_gradient_checkpointing", False):
            continue
        if any(name.startswith(prefix + ".") for prefix, _ in found):
            continue
        if _is_causal_lm(module):
            found.append((name, module))
        elif _is_vision_encoder(module):
            encoder = getattr(module, "encoder", module)
            if any(p.requires_grad for p in encoder.parameters()):
                found.append((name, module))
    return found


def enable_gradient_checkpointing(model: nn.Module) -> list[str]:
    """Turn on non-reentrant activation checkpointing where ``checkpoint_targets`` says; returns their names."""
    names = []
    for name, module in checkpoint_targets(model):
        enable = getattr(module, "activation_checkpointing_enable", None)  # transformers >= 5 spelling
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(module.config, "use_cache"):
            module.config.use_cache = False
        names.append(name or type(module).__name__)
    return names


def frozen_tower_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The tensors ``train.frozen_dtype`` stores in the compute dtype: frozen floating-point
    parameters of two or more dimensions inside every transformers causal LM and vision encoder
    of ``model`` (tied weights once)."""
    from transformers import PreTrainedModel

    seen: set[int] = set()
    found: list[tuple[str, nn.Parameter]] = []
    for name, module in model.named_modules():
        if not isinstance(module, PreTrainedModel) or not (_is_causal_lm(module) or _is_vision_encoder(module)):
            continue
        for sub, param in module.named_parameters():
            if param.requires_grad or param.ndim < 2 or not param.is_floating_point() or id(param) in seen:
                continue
            seen.add(id(param))
            found.append((f"{name}.{sub}" if name else sub, param))
    return found


FROZEN_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def frozen_dtype_name(setting: str, mixed_precision: str, sharded: bool = False) -> str:
    """``train.frozen_dtype`` resolved against the run: ``fp32`` / ``bf16`` / ``fp16``.

    ``auto`` is the autocast dtype (``bf16``/``fp16``; fp8 runs compute in bf16 outside the
    fp8 matmuls) and fp32 without mixed precision or under FSDP/DeepSpeed (``sharded``)."""
    if setting != "auto":  # one of FROZEN_DTYPE_NAMES: TrainSettings validates it
        return setting
    if sharded:
        return "fp32"
    return {"bf16": "bf16", "fp16": "fp16", "fp8": "bf16"}.get(str(mixed_precision).lower(), "fp32")


def frozen_load_dtype(setting: str) -> torch.dtype:
    """The dtype to read a frozen tower from disk in: ``frozen_dtype_name`` for the run the current
    ``Accelerator`` describes (call it after ``make_accelerator``; none yet: fp32). Loading straight
    in it (``sources.open_model``) keeps host memory near the stored size instead of an fp32 copy
    cast down later; ``cast_frozen_towers`` then has nothing left to do."""
    from accelerate.state import AcceleratorState

    if not AcceleratorState._shared_state:
        return torch.float32
    state = AcceleratorState()
    sharded = state.distributed_type.name in ("FSDP", "DEEPSPEED")
    return getattr(torch, FROZEN_DTYPE_NAMES[frozen_dtype_name(setting, str(state.mixed_precision), sharded)])


def cast_frozen_towers(model: nn.Module, dtype: torch.dtype) -> int:
    """Store ``frozen_tower_parameters`` in ``dtype`` (in place); returns how many bytes that saved."""
    saved = 0
    for _, param in frozen_tower_parameters(model):
        if param.dtype == dtype:
            continue
        before = param.numel() * param.element_size()
        param.data = param.data.to(dtype)
        saved += before - param.numel() * param.element_size()
    return saved


def check_quantization(mode: str, cuda: bool | None = None) -> None:
    """Refuse a quantised frozen LLM where bitsandbytes cannot run it (one line, exit 2)."""
    if mode == "none":
        return
    if mode not in QUANTIZATION_BYTES:
        raise UserError(f"train.llm_quantization must be none, int8 or nf4, not {mode!r}")
    if cuda is None:
        cuda = torch.cuda.is_available()
    if not cuda:
        raise UserError(f"train.llm_quantization={mode} needs a CUDA GPU (bitsandbytes has no CPU kernels); "
                        f"use train.llm_quantization=none on CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(f"train.llm_quantization={mode} needs bitsandbytes: pip install bitsandbytes") from None


def quantize_frozen_llm(model: nn.Module, mode: str) -> int:
    """Swap the frozen causal LM's decoder ``nn.Linear`` layers for bitsandbytes 8-/4-bit ones
    (quantised when moved to the GPU); returns how many were swapped. CUDA only (``check_quantization``)."""
    check_quantization(mode)
    import bitsandbytes as bnb

    swapped = 0
    for _, lm in [(n, m) for n, m in model.named_modules() if _is_causal_lm(m)]:
        for parent in list(lm.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is not nn.Linear or child is getattr(lm, "lm_head", None) or child.weight.requires_grad:
                    continue
                bias = child.bias is not None
                if mode == "int8":
                    new = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias, has_fp16_weights=False,
                                              threshold=6.0)
                    new.weight = bnb.nn.Int8Params(child.weight.data.to(torch.float16), requires_grad=False,
                                                   has_fp16_weights=False)
                else:
                    new = bnb.nn.Linear4bit(child.in_features, child.out_features, bias, compute_dtype=torch.bfloat16,
                                            quant_type="nf4")
                    new.weight = bnb.nn.Params4bit(child.weight.data.to(torch.bfloat16), requires_grad=False,
                                                   quant_type="nf4")
                if bias:
                    new.bias = nn.Parameter(child.bias.data.clone(), requires_grad=False)
                setattr(parent, child_name, new.cuda())
                swapped += 1
    return swapped
