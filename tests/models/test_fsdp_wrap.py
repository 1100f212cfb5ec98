"""FSDP wrapping of vltool's models: every tower's blocks (ViT, Q-Former, LLM) become units.

What Accelerate's own default policy does with a BLIP-2 model changes between releases (1.15 stopped
on ``Blip2TextEmbeddings``; 1.16 does not), so these tests assert only what vltool names and wraps.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
from support.tiny_models import tiny_clip_mma, tiny_model

from vltool.training.fsdp import configure_fsdp, fsdp_layer_classes


def _accelerator(plugin, kind=DistributedType.FSDP):
    return SimpleNamespace(distributed_type=kind, state=SimpleNamespace(fsdp_plugin=plugin))


def _plugin(**kwargs):
    return FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap", **kwargs)


def _units(plugin, model) -> dict[str, int]:
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    units: dict[str, int] = {}
    for module in model.modules():
        if policy(module):
            units[type(module).__name__] = units.get(type(module).__name__, 0) + 1
    return units


@pytest.mark.parametrize(("family", "decoder"), [("opt", "OPTDecoderLayer"), ("llama", "LlamaDecoderLayer")])
def test_blip2_blocks_become_fsdp_units(family, decoder):
    model, _ = tiny_model(family)
    plugin = _plugin()
    assert configure_fsdp(_accelerator(plugin), model) == sorted(["Blip2EncoderLayer", "Blip2QFormerLayer", decoder])
    # 1 ViT layer, 2 Q-Former layers, 2 LLM layers (tiny_blip2): each its own unit
    assert _units(plugin, model) == {"Blip2EncoderLayer": 1, "Blip2QFormerLayer": 2, decoder: 2}


def test_mma_model_shards_its_llm_and_clip_blocks():
    model = tiny_clip_mma(lm_layers=3)
    assert fsdp_layer_classes(model) == ["CLIPEncoderLayer", "LlamaDecoderLayer"]
    plugin = _plugin()
    configure_fsdp(_accelerator(plugin), model)
    assert _units(plugin, model) == {"CLIPEncoderLayer": 2, "LlamaDecoderLayer": 3}


def test_names_from_the_config_and_other_runs_are_left_alone():
    model, _ = tiny_model("llama")
    plugin = _plugin(transformer_cls_names_to_wrap=["LlamaDecoderLayer"])
    assert configure_fsdp(_accelerator(plugin), model) is None
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    untouched = _plugin()
    assert configure_fsdp(_accelerator(untouched, DistributedType.MULTI_GPU), model) is None
    assert not untouched.transformer_cls_names_to_wrap
