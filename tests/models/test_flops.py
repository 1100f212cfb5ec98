"""The analytic FLOP count (vltool.models.flops) against torch's FLOP counter on tiny models.

Tolerance: VPGTrans counts match the counter exactly (relative 1e-9); tune-mma matches after
one known correction: torch's counter counts the input gradient of a GROUPED convolution as if it
were dense (groups x too much; the adapters' up-projections are 1x1 grouped convolutions), so the
test adds that excess before comparing (relative 1e-9). Attention runs eager: on the CPU, SDPA's
kernel is one the counter does not know.
"""

from __future__ import annotations

import pytest
import torch
from support.tiny_models import tiny_model
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from vltool.models import vlm
from vltool.models.flops import mma_flops, peak_tflops, vpgtrans_flops
from vltool.models.lm_loss import labelled_count
from vltool.models.mma.build import build_clip_mma
from vltool.models.mma.inject import AdapterSettings
from vltool.models.mma.layout import VISUAL
from vltool.models.mma.mma_model import mma_loss


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def eager(model) -> None:
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None:
            config._attn_implementation = "eager"


@pytest.mark.parametrize("family", ["opt", "llama"])
@pytest.mark.parametrize("stage", ["warmup", "warmup_cached", "stage2"])
def test_vpgtrans_flops_match_torch_counter(family, stage):
    model, _ = tiny_model(family)
    eager(model)
    model.train()
    batch, text = 3, 7
    q = model.config.num_query_tokens
    ids = torch.cat([torch.full((batch, q), model.config.image_token_index), torch.randint(3, 20, (batch, text))], 1)
    data = {"pixel_values": torch.randn(batch, 3, 28, 28), "input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": ids.clone()}
    vlm.set_trainable(model, vlm.STAGE2_PARTS if stage == "stage2" else vlm.WARMUP_PARTS)
    if stage == "warmup_cached":
        with torch.no_grad():
            data["query_output"] = vlm.query_output(model, data.pop("pixel_values"))
    got = counted(lambda: vlm.caption_loss(model, data).backward())
    # Every position but the first is labelled (labels = ids), so the LM head runs on q + text - 1 a row.
    want = vpgtrans_flops(model.config, stage, batch, text, labelled=labelled_count(data["labels"]))
    assert labelled_count(data["labels"]) == batch * (q + text - 1)
    assert want.total == pytest.approx(got, rel=1e-9)
    assert want.per_sample == want.total / batch


@pytest.mark.parametrize(("placement", "vision_adapters"), [("attn", True), ("block", False)])
def test_mma_flops_match_torch_counter(placement, vision_adapters):
    torch.manual_seed(0)
    lm_config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager")
    vision_config = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=4, num_attention_heads=2,
                                     image_size=28, patch_size=14, attn_implementation="eager")
    adapter = {"bottleneck": 4, "groups": 2, "router": True}
    model = build_clip_mma(LlamaForCausalLM(lm_config), CLIPVisionModel(vision_config),
                           AdapterSettings(bottleneck=4, groups=2, dropout=0.0), placement, visual_tokens=2,
                           vision_adapters=vision_adapters)
    model.train()
    batch, tokens, images = 3, 9, 2
    ids = torch.randint(3, 100, (batch, tokens))
    ids[:images, 2:4] = VISUAL
    data = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "modality": (torch.arange(batch) < images).long(),
            "pixel_values": torch.randn(images, 3, 28, 28), "labels": ids.clamp(min=0)}
    got = counted(lambda: mma_loss(model, data).backward())
    want = mma_flops(lm_config, vision_config, adapter, placement, batch, tokens, images, visual_tokens=2,
                     vision_adapters=vision_adapters, labelled=batch * tokens)  # each text slot follows a token
    # The counter's grouped-convolution excess: (groups - 1) x each up-projection's forward.
    sites = lm_config.num_hidden_layers * (2 if placement == "block" else 1)
    up = sites * 2 * batch * (tokens + 1) * 32 * 2 * 2
    if vision_adapters:
        up += vision_config.num_hidden_layers * 2 * images * 5 * 16 * 2 * 2
    assert want.total + (adapter["groups"] - 1) * up == pytest.approx(got, rel=1e-9)


def test_lavin7b_and_vpgtrans_real_scale_magnitudes():
    """The issue's estimate: ~2.3e12 FLOPs a sample for stage 2 on LLaMA-7B at 32 + 32 tokens."""
    from vltool.models.meta_count import arch, meta_blip2

    model = meta_blip2(arch("blip2-opt-2.7b"), arch("llama-7b")["text"])
    per_sample = vpgtrans_flops(model.config, "stage2", 16, 33, labelled=16 * 32).per_sample
    assert 2.0e12 < per_sample < 2.6e12
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("cpu") is None
