"""The labelled-positions loss (vltool.models.lm_loss) against transformers' full-logits loss.

For BLIP-2 (OPT, OPT with project_out, LLaMA; from pixels and from cached Q-Former outputs) and
for MMA (adapted and merged): the same loss and the same gradient of every trainable tensor, on
right-padded batches whose rows have different numbers of labelled tokens; and the LM head sees
``[n_labelled, d]``, not ``[B, T, d]``.
"""

from __future__ import annotations

import pytest
import torch
from support.tiny_models import (
    Q,
    mma_llama,
    pixels,
    qformer_config,
    tiny_clip,
    tiny_llama,
    tiny_opt,
    vision_config,
    word_tokenizer,
)
from torch import nn
from transformers import (
    Blip2QFormerModel,
    Blip2VisionModel,
    OPTForCausalLM,
)

from vltool.models import vlm
from vltool.models.lm_loss import IGNORE, labelled_count, next_token_targets
from vltool.models.mma.build import build_clip_mma
from vltool.models.mma.inject import AdapterSettings
from vltool.models.mma.layout import VISUAL
from vltool.models.mma.mma_model import MMAModel, mma_loss
from vltool.sources.hf_blip2 import ensure_image_token

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TIGHT = {"rtol": 1e-5, "atol": 1e-6}


def opt_350m_style(vocab: int) -> OPTForCausalLM:
    """OPT whose word embeddings (24) are narrower than the decoder (48): project_in / project_out."""
    return tiny_opt(vocab, word_embed_proj_dim=24)


def blip2(family: str):
    tokenizer = word_tokenizer()
    lm = {"opt": lambda: tiny_opt(len(tokenizer) + 3), "opt350m": lambda: opt_350m_style(len(tokenizer) + 3),
          "llama": lambda: tiny_llama(len(tokenizer))}[family]()
    image_token = ensure_image_token(tokenizer, lm)
    torch.manual_seed(0)
    model = vlm.assemble(Blip2VisionModel(vision_config()), Blip2QFormerModel(qformer_config()),
                         torch.randn(1, Q, 32) * 0.02, nn.Linear(32, lm.config.hidden_size), lm, image_token).eval()
    layout = vlm.VLTextLayout(tokenizer, Q, image_token, 16)
    # Right-padded rows with 2, 5 and 9 caption words (+ end): different labelled counts per row.
    batch = layout.training(["", "a", ""], ["red circle", "a small green square on the left",
                                            "blue triangle and a big red circle on the right side"])
    assert (batch["attention_mask"] == 0).any()
    return model, {**batch, "pixel_values": pixels(3)}


def grads(model: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert out and all(g is not None for g in out.values())
    return out


def assert_same(old: torch.Tensor, new: torch.Tensor, model: nn.Module, old_loss, new_loss) -> None:
    torch.testing.assert_close(new.detach(), old.detach(), **TIGHT)
    before, after = grads(model, old_loss()), grads(model, new_loss())
    assert before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], **TIGHT, msg=lambda m, n=name: f"{n}: {m}")
    assert any(g.abs().sum() > 0 for g in after.values())


@pytest.mark.parametrize("family", ["opt", "opt350m", "llama"])
@pytest.mark.parametrize("cached", [False, True], ids=["pixels", "query_output"])
def test_caption_loss_equals_the_full_logits_loss_with_the_same_gradients(family: str, cached: bool) -> None:
    model, batch = blip2(family)
    vlm.set_trainable(model, vlm.WARMUP_PARTS if cached else vlm.STAGE2_PARTS)
    if cached:
        with torch.no_grad():
            batch["query_output"] = vlm.query_output(model, batch.pop("pixel_values"))
    old, new = vlm.forward(model, batch).loss, vlm.caption_loss(model, batch)
    assert_same(old, new, model, lambda: vlm.forward(model, batch).loss, lambda: vlm.caption_loss(model, batch))
    if family == "opt350m":
        assert model.language_model.model.decoder.project_out is not None


def tiny_mma(merged: bool = False) -> MMAModel:
    torch.manual_seed(0)
    lm = mma_llama()
    if merged:  # no adapters: a merged model runs the text alone; train the whole LM to compare gradients
        model = MMAModel(lm.eval())
        model.requires_grad_(False)
        model.lm.requires_grad_(True)
        return model
    vision = tiny_clip(4)
    model = build_clip_mma(lm, vision, AdapterSettings(dropout=0.0), "attn", visual_tokens=2).eval()
    with torch.no_grad():  # adapters start as the identity: perturb them so every gradient is non-zero
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def mma_batch(images: bool = True) -> dict[str, torch.Tensor]:
    """Right-padded rows: prompts of different lengths, answers of 4, 1 and 2 tokens, row 2 text-only."""
    g = torch.Generator().manual_seed(3)
    lengths, answers = (12, 9, 7), (4, 1, 2)
    ids = torch.zeros(3, 12, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    mask = torch.zeros_like(ids)
    for row, (length, answer) in enumerate(zip(lengths, answers)):
        ids[row, :length] = torch.randint(3, 40, (length,), generator=g)
        mask[row, :length] = 1
        labels[row, length - answer:length] = ids[row, length - answer:length]
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if images:
        ids[:2, 1:3] = VISUAL
        batch.update(modality=torch.tensor([1, 1, 0]), pixel_values=torch.randn(2, 3, 28, 28, generator=g))
    return batch


@pytest.mark.parametrize("merged", [False, True], ids=["adapted", "merged"])
def test_mma_loss_equals_the_full_logits_loss_with_the_same_gradients(merged: bool) -> None:
    model, batch = tiny_mma(merged), mma_batch(images=not merged)
    assert model.merged == merged
    old, new = model(batch).loss, mma_loss(model, batch)
    assert_same(old, new, model, lambda: model(batch).loss, lambda: mma_loss(model, batch))


def head_inputs(lm: nn.Module, run) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    handle = lm.get_output_embeddings().register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    try:
        run()
    finally:
        handle.remove()
    return shapes


def test_the_lm_head_sees_only_the_labelled_rows() -> None:
    model, batch = blip2("llama")
    vlm.set_trainable(model, vlm.WARMUP_PARTS)
    n, (b, t) = labelled_count(batch["labels"]), batch["labels"].shape
    assert n == int((batch["labels"] != IGNORE).sum()) < b * (t - Q)  # captions only, padding excluded
    d = model.config.text_config.hidden_size
    assert head_inputs(model.language_model, lambda: vlm.forward(model, batch)) == [(b, t, d)]
    assert head_inputs(model.language_model, lambda: vlm.caption_loss(model, batch).backward()) == [(n, d)]

    mma, data = tiny_mma(), mma_batch()
    assert head_inputs(mma.lm, lambda: mma(data)) == [(3, 13, 32)]  # the modality token + 12 text slots
    assert head_inputs(mma.lm, lambda: mma_loss(mma, data).backward()) == [(4 + 1 + 2, 32)]


def test_next_token_targets_shift_like_transformers() -> None:
    labels = torch.tensor([[IGNORE, IGNORE, 5, 6], [IGNORE, 7, IGNORE, IGNORE]])
    keep, targets = next_token_targets(labels)
    assert keep.tolist() == [[False, True, True, False], [True, False, False, False]]
    assert targets.tolist() == [5, 6, 7] and labelled_count(labels) == 3


class Wrapper(nn.Module):
    """Stands in for DDP: holds the model as ``.module``; the loss must call the wrapper itself."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.module(*args, **kwargs)


def test_the_losses_run_through_a_wrapper_forward() -> None:
    """DDP arms its gradient all-reduce in its own forward; a loss that bypassed it would not sync."""
    model, batch = blip2("opt")
    vlm.set_trainable(model, vlm.STAGE2_PARTS)
    wrapped = Wrapper(model)
    torch.testing.assert_close(vlm.caption_loss(wrapped, batch), vlm.forward(model, batch).loss, **TIGHT)
    assert wrapped.calls == 1
    mma = Wrapper(tiny_mma())
    torch.testing.assert_close(mma_loss(mma, mma_batch()), mma.module(mma_batch()).loss, **TIGHT)
    assert mma.calls == 1


def test_dry_run_counts_logits_for_the_answer_tokens_only() -> None:
    from vltool.models.meta_count import GIB
    from vltool.models.mma.count import activation_gb
    from vltool.models.mma.lavin7b import meta_lavin7b
    from vltool.models.mma.layout import MAX_ANSWER_TOKENS

    model = meta_lavin7b()
    row = model.lm.config.vocab_size * 8 / GIB  # fp32 logits + their gradient, per labelled token

    def logits(tokens: int, **kw) -> float:
        return activation_gb(model, 4, tokens, "bf16", **kw) - activation_gb(model, 4, tokens, "bf16", answer_tokens=0)

    assert logits(512, answer_tokens=40) == pytest.approx(4 * 40 * row)
    assert logits(512) == pytest.approx(4 * (MAX_ANSWER_TOKENS + 1) * row)  # the collator's longest answer + EOS
    assert logits(100) == pytest.approx(4 * 100 * row)
