"""Memory levers: gradient checkpointing keeps the gradients through a frozen LLM; quantisation is CUDA-only."""

from __future__ import annotations

import pytest
import torch
from support.loop_fixture import TinyNet, make_data, mse, settings
from support.tiny_models import tiny_clip_mma, tiny_model

from vltool.errors import UserError
from vltool.models import vlm
from vltool.models.memory import check_quantization, checkpoint_targets, enable_gradient_checkpointing
from vltool.models.mma.layout import VISUAL
from vltool.models.mma.mma_model import mma_loss
from vltool.training.loop import make_accelerator, train


def _grads(model, loss_fn, batch) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # dropout draws
    loss_fn(model, batch).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _same_grads(with_gc, without) -> None:
    assert with_gc.keys() == without.keys() and with_gc
    for name, grad in without.items():
        assert grad.abs().sum() > 0, name  # the gradient really reaches it
        torch.testing.assert_close(with_gc[name], grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_checkpointed_frozen_llm_passes_the_same_gradients_to_the_vpg(family):
    model, _ = tiny_model(family)
    model.language_model.config.dropout = 0.1  # dropout inside checkpointed layers replays its RNG
    vlm.set_trainable(model, vlm.STAGE2_PARTS)
    model.train()
    q, n = model.config.num_query_tokens, 3
    ids = torch.cat([torch.full((n, q), model.config.image_token_index), torch.randint(3, 20, (n, 6))], 1)
    batch = {"pixel_values": torch.randn(n, 3, 28, 28), "input_ids": ids, "attention_mask": torch.ones_like(ids),
             "labels": ids.clone()}
    without = _grads(model, vlm.caption_loss, batch)
    assert [name for name, _ in checkpoint_targets(model)] == ["language_model"]  # not the frozen ViT, not the Q-Former
    enable_gradient_checkpointing(model)
    assert model.language_model.is_activation_checkpointing
    _same_grads(_grads(model, vlm.caption_loss, batch), without)


def test_checkpointing_covers_an_adapted_vision_encoder():
    model = tiny_clip_mma(vision_layers=4)
    with torch.no_grad():  # non-zero up-projections, so gradients reach every adapter
        for name, p in model.named_parameters():
            if ".up_" in name:
                p.normal_(0, 0.02)
    model.train()
    ids = torch.randint(3, 100, (3, 9))
    ids[:2, 2:4] = VISUAL
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "modality": torch.tensor([1, 1, 0]),
             "pixel_values": torch.randn(2, 3, 28, 28), "labels": ids.clamp(min=0)}
    without = _grads(model, mma_loss, batch)
    assert sorted(name for name, _ in checkpoint_targets(model)) == ["front_end.vision", "lm"]
    enable_gradient_checkpointing(model)
    _same_grads(_grads(model, mma_loss, batch), without)


def test_quantized_llm_is_refused_on_cpu_in_one_line():
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        check_quantization("nf4", cuda=False)
    check_quantization("none", cuda=False)
    cfg = settings(2).model_copy(update={"llm_quantization": "int8"})
    with pytest.raises(UserError, match=r"llm_quantization=int8 needs a CUDA GPU") as err:
        train(TinyNet(), mse, make_data(), cfg, accelerator=make_accelerator("no", cpu=True))
    assert "\n" not in str(err.value)


def _recipe(checkpointing: bool = False, quantization: str = "none"):
    from types import SimpleNamespace

    return SimpleNamespace(src="opt2.7b", dst="llama7b", max_text_tokens=32,
                           train=SimpleNamespace(precision="bf16", micro_batch_size=8, batch_size=64,
                                                 gradient_checkpointing=checkpointing, llm_quantization=quantization))


def test_dry_run_reflects_checkpointing_and_quantization_by_the_documented_formulas():
    from vltool.models.meta_count import GIB, vpgtrans_table

    base = vpgtrans_table(_recipe())["memory"]["warm-up"]
    ckpt = vpgtrans_table(_recipe(checkpointing=True))["memory"]["warm-up"]
    seq, b, h, layers = 32 + 1 + 32, 8, 4096, 32
    full_layer = seq * b * h * (34 + 5 * 32 * seq / h)  # bf16: 2 bytes a value
    logits = b * 32 * 32000 * 8  # the LM head runs on the caption tokens only (lm_loss)
    assert ckpt["activations_gb"] == pytest.approx((layers * seq * b * h * 2 + full_layer + logits) / GIB)
    assert ckpt["activations_gb"] < 0.2 * base["activations_gb"]
    assert ckpt["weights_gb"] == base["weights_gb"]
    linear = layers * (4 * h * h + 3 * h * 11008)  # LLaMA-7B's decoder linear weights (no LM head)
    for mode, per_param in (("int8", 1.0), ("nf4", 0.5 + 1 / 64)):
        quant = vpgtrans_table(_recipe(quantization=mode))["memory"]["warm-up"]
        assert quant["weights_gb"] == pytest.approx(base["weights_gb"] - linear * (2 - per_param) / GIB)
        assert quant["activations_gb"] == base["activations_gb"]


def test_mma_dry_run_checkpointing_covers_llm_and_adapted_vit():
    from vltool.models.meta_count import layers_activation_bytes
    from vltool.models.mma.count import activation_gb
    from vltool.models.mma.lavin7b import meta_lavin7b

    model = meta_lavin7b()
    full, ckpt = activation_gb(model, 4, 256, "bf16"), activation_gb(model, 4, 256, "bf16", checkpointing=True)
    saved_llm = layers_activation_bytes(32, 256, 4, 4096, 32, 2) - layers_activation_bytes(32, 256, 4, 4096, 32, 2, True)
    saved_vit = layers_activation_bytes(24, 257, 4, 1024, 16, 2) - layers_activation_bytes(24, 257, 4, 1024, 16, 2, True)
    assert (full - ckpt) * 1024**3 == pytest.approx(saved_llm + saved_vit)
