"""Real-scale dry-run counts on the meta device, and the memory formula, derived by hand."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from support.tiny_models import tiny_model
from transformers import BlipImageProcessor

from vltool.errors import UserError
from vltool.models.meta_count import (
    GIB,
    _arch_of,
    layer_activation_bytes,
    meta_blip2,
    part_counts,
    vpgtrans_table,
)
from vltool.sources.hf_blip2 import save_blip2_folder


def recipe(src: str, dst: str, precision: str = "bf16", batch: int = 8, text: int = 32) -> SimpleNamespace:
    return SimpleNamespace(src=src, dst=dst, max_text_tokens=text,
                           train=SimpleNamespace(precision=precision, micro_batch_size=batch, batch_size=64))


def llama7b_params() -> int:
    h, ffn, layers, vocab = 4096, 11008, 32, 32000
    per_layer = 4 * h * h + 3 * h * ffn + 2 * h  # q/k/v/o, gate/up/down, two RMSNorms
    return layers * per_layer + 2 * vocab * h + h  # embeddings, untied lm_head, final norm


def opt_params(h: int, ffn: int, layers: int, vocab: int = 50272, positions: int = 2048) -> int:
    per_layer = 4 * (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 2 * 2 * h
    return layers * per_layer + vocab * h + (positions + 2) * h + 2 * h  # tied lm_head, learned positions, final LN


def eva_vit_g_params() -> int:
    h, ffn, layers, patches = 1408, 6144, 39, (224 // 14) ** 2
    per_layer = 2 * 2 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * ffn + ffn) + (ffn * h + h)
    return layers * per_layer + h + (patches + 1) * h + (h * 3 * 14 * 14 + h)  # cls, positions, patch conv


def test_real_scale_counts_match_the_architectures() -> None:
    table = vpgtrans_table(recipe("opt2.7b", "vicuna7b"))
    counts = table["counts"]
    assert counts["LLM (frozen)"] == llama7b_params() == 6_738_415_616
    assert counts["ViT (frozen)"] == eva_vit_g_params()
    assert counts["ln_vision"] == 2 * 1408
    assert counts["query tokens"] == 32 * 768
    assert counts["projector"] == 768 * 4096 + 4096
    opt = vpgtrans_table(recipe("opt2.7b", "opt6.7b"))["counts"]["LLM (frozen)"]
    assert opt == opt_params(4096, 16384, 32)
    total_row = next(r for r in table["rows"] if r[0] == "total")
    assert total_row[2] == counts["projector"]
    assert total_row[3] == counts["projector"] + counts["Q-Former"] + counts["query tokens"] + counts["ln_vision"]


def test_memory_terms_follow_the_documented_formula() -> None:
    table = vpgtrans_table(recipe("opt2.7b", "llama7b", precision="bf16", batch=8, text=32))
    counts, memory = table["counts"], table["memory"]
    total = sum(counts.values())
    warm, transfer = memory["warm-up"], memory["transfer"]
    # Frozen LLM / ViT weight matrices at 2 bytes (bf16), every other frozen tensor in fp32: the
    # warm-up's frozen Q-Former and query tokens, the ViT's and LLM's norms and biases.
    model = meta_blip2(_arch_of("opt2.7b", "source"), _arch_of("llama7b", "target")["text"])
    vectors = sum(p.numel() for k, p in model.named_parameters()
                  if k.startswith(("vision_model.", "language_model.")) and p.ndim == 1)
    matrices = counts["ViT (frozen)"] + counts["ln_vision"] + counts["LLM (frozen)"] - vectors
    # EVA ViT-g block: 2 LayerNorms (w, b), qkv bias (3d), proj bias, fc1 bias (6144), fc2 bias; then
    # post_layernorm and the patch-embedding bias. LLaMA-7B: 2 RMSNorms a layer + the final one.
    vit_block = 4 * 1408 + 3 * 1408 + 1408 + 6144 + 1408
    assert vectors == 39 * vit_block + 2 * 1408 + 1408 + (2 * 32 + 1) * 4096
    frozen_fp32 = total - counts["projector"] - matrices
    assert warm["weights_gb"] == pytest.approx((matrices * 2 + frozen_fp32 * 4) / GIB)
    assert warm["trainable_states_gb"] == pytest.approx(counts["projector"] * 16 / GIB)
    seq = 32 + 1 + 32
    llm = 32 * seq * 8 * 4096 * (34 + 5 * 32 * seq / 4096) + 8 * 32 * 32000 * 8  # logits: caption tokens only
    assert warm["activations_gb"] == pytest.approx(llm / GIB)
    qformer = 12 * 32 * 8 * 768 * (34 + 5 * 12 * 32 / 768) * 2 + 8 * 257 * 1408 * 8
    assert transfer["activations_gb"] == pytest.approx((llm + qformer) / GIB)
    assert layer_activation_bytes(10, 2, 64, 4, 4) == 2 * (10 * 2 * 64 * (34 + 5 * 4 * 10 / 64))
    fp32 = vpgtrans_table(recipe("opt2.7b", "llama7b", precision="no"))["memory"]["warm-up"]
    assert fp32["weights_gb"] == pytest.approx((total - counts["projector"]) * 4 / GIB)


def test_local_folders_are_counted_from_their_config(tmp_path: Path) -> None:
    model, tok = tiny_model("llama")
    save_blip2_folder(model, tok, BlipImageProcessor(), tmp_path / "blip2")
    model.language_model.save_pretrained(str(tmp_path / "lm"))
    built = meta_blip2(_arch_of(str(tmp_path / "blip2"), "source"), _arch_of(str(tmp_path / "lm"), "target")["text"])
    expected = part_counts(model)
    assert part_counts(built) == expected
    with pytest.raises(UserError, match="neither"):
        vpgtrans_table(recipe("no-such-model", "vicuna7b"))
