"""The VPGTrans model (transformers' Blip2ForConditionalGeneration): loss, feature cache, trainable parts."""

from __future__ import annotations

import pytest
import torch
from support.tiny_models import Q, pixels, tiny_model
from torch import nn

from vltool.data.text_batches import IGNORE
from vltool.models import vlm


def layout_batch(family: str):
    model, tok = tiny_model(family)
    layout = vlm.VLTextLayout(tok, Q, model.config.image_token_index, 16)
    batch = layout.training(["", "a"], ["a red circle on the left", "small green square"])
    return model, layout, {**batch, "pixel_values": pixels(2)}


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_loss_is_the_caption_cross_entropy(family: str) -> None:
    model, _, batch = layout_batch(family)
    out = vlm.forward(model, batch)
    assert (batch["input_ids"][:, :Q] == model.config.image_token_index).all()
    logits, target = out.logits[:, :-1], batch["labels"][:, 1:]
    manual = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE)
    assert torch.allclose(out.loss, manual, atol=1e-6)
    assert (batch["labels"][:, :Q] == IGNORE).all()  # no loss on the image positions


def test_feature_cache_gives_the_same_loss_and_trains_the_projector() -> None:
    model, _, batch = layout_batch("opt")
    vlm.set_trainable(model, vlm.WARMUP_PARTS)
    with torch.no_grad():
        cached = vlm.query_output(model, batch["pixel_values"])
    assert cached.shape == (2, Q, 32)
    direct = vlm.forward(model, batch).loss
    from_cache = vlm.forward(model, {**{k: v for k, v in batch.items() if k != "pixel_values"},
                                     "query_output": cached}).loss
    assert torch.allclose(direct, from_cache, atol=1e-6)
    from_cache.backward()
    assert model.language_projection.weight.grad is not None


def test_trainable_parts_per_stage() -> None:
    model, _ = tiny_model("opt")
    vlm.set_trainable(model, vlm.WARMUP_PARTS)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "language_projection.weight", "language_projection.bias"}
    vlm.set_trainable(model, vlm.STAGE2_PARTS)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "query_tokens" in trainable and "vision_model.post_layernorm.weight" in trainable
    assert any(n.startswith("qformer.") for n in trainable)
    assert not any(n.startswith(("language_model.", "vision_model.encoder", "vision_model.embeddings"))
                   for n in trainable)


def test_assemble_copies_the_query_tokens() -> None:
    model, _ = tiny_model("llama")
    source = model.query_tokens
    again = vlm.assemble(model.vision_model, model.qformer, source, model.language_projection, model.language_model,
                         model.config.image_token_index)
    with torch.no_grad():
        again.query_tokens.add_(1.0)
    assert not torch.equal(again.query_tokens, source)
