"""FSDP wrapping that fits vltool's composite models.

Accelerate's ``TRANSFORMER_BASED_WRAP`` without ``fsdp_transformer_layer_cls_to_wrap`` takes
the model's ``_no_split_modules``. A ``Blip2ForConditionalGeneration`` lists classes that only
some BLIP-2 variants contain (``Blip2TextEmbeddings``), so Accelerate stops with "Could not find
the transformer layer class" before the first step, and an MMA model (a plain module holding a
LLaMA and a CLIP tower) lists none, so nothing but the root would be sharded. vltool fills the
names in from the model itself: the classes of the repeated blocks of every tower (the entries of
each ``layers`` / ``layer`` ModuleList: ViT, Q-Former and LLM layers), so each block is its own
FSDP unit, which is what sharding a 7B-13B frozen LLM needs. A config that names classes itself
is left as it is.
"""

from __future__ import annotations

from typing import Any

from torch import nn

BLOCK_LISTS = ("layers", "layer")


def fsdp_layer_classes(model: nn.Module) -> list[str]:
    """Class names of the repeated transformer blocks in ``model`` (sorted, each once)."""
    names: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in BLOCK_LISTS and len(module):
            names.update(type(block).__name__ for block in module)
    return sorted(names)


def configure_fsdp(accelerator: Any, model: nn.Module) -> list[str] | None:
    """Set the FSDP plugin's layer classes from ``model`` when its transformer-based policy names
    none; returns the names set (None when nothing changed or the run is not FSDP)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        return None
    plugin = accelerator.state.fsdp_plugin
    if plugin.transformer_cls_names_to_wrap or not _transformer_policy(plugin):
        return None
    plugin.transformer_cls_names_to_wrap = fsdp_layer_classes(model)
    return plugin.transformer_cls_names_to_wrap


def _transformer_policy(plugin: Any) -> bool:
    import functools

    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    policy = plugin.auto_wrap_policy
    if isinstance(policy, functools.partial):
        policy = policy.func
    return policy is transformer_auto_wrap_policy or str(policy).lower() == "transformer_based_wrap"
