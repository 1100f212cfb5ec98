"""Known answer: LaVIN-7B trains exactly 3,781,296 parameters (built on the meta device)."""

from __future__ import annotations

import pytest

from vltool.models.mma.count import parameter_table, trainable_count
from vltool.models.mma.lavin7b import LAVIN_7B_TRAINABLE, clip_vit_l14_config, llama7b_config, meta_lavin7b

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_real_scale_configs() -> None:
    llm, clip = llama7b_config(), clip_vit_l14_config()
    assert (llm.hidden_size, llm.num_hidden_layers, llm.num_attention_heads, llm.intermediate_size,
            llm.vocab_size) == (4096, 32, 32, 11008, 32000)
    assert (clip.hidden_size, clip.num_hidden_layers, clip.num_attention_heads, clip.intermediate_size,
            clip.patch_size, clip.image_size) == (1024, 24, 16, 4096, 14, 224)



def test_lavin_7b_trains_exactly_3781296_parameters() -> None:
    model = meta_lavin7b("attn")
    assert model.lm.model.embed_tokens.weight.is_meta and model.front_end.visual_tokens == 6
    parts = {row.part: row for row in parameter_table(model)}
    assert parts["LLM MM-Adapters"].trainable == 2_621_760 == 32 * 81_930
    assert parts["vision MM-Adapters"].trainable == 491_760 == 24 * 20_490
    assert parts["visual projection"].trainable == 659_584 == 1024 * 128 + 128 + 128 * 4096 + 4096
    assert parts["modality embedding"].trainable == 8_192
    assert parts["LLM (frozen)"].trainable == 0 == parts["vision encoder (frozen)"].trainable
    assert trainable_count(model) == LAVIN_7B_TRAINABLE == 3_781_296
    assert sum(t.numel() for t in model.trainable_state().values()) == LAVIN_7B_TRAINABLE


def test_lavin_7b_decay_groups_follow_the_tensors_not_their_names() -> None:
    """LaVIN (timm's rule): AdamW decay 0.02 on every >= 2-D tensor, none on biases and 1-D."""
    from vltool.training.optim import param_groups

    decay, no_decay = param_groups(meta_lavin7b("attn"), 0.02)
    count = lambda group: sum(p.numel() for p in group["params"])
    # per LLM adapter: down 4096x8, two grouped ups 4096x4, router 4096x2 decayed; 8 + 2x4096 + 2 biases not
    llm_decay, llm_bias = 32 * (4096 * 8 + 2 * 4096 * 4 + 4096 * 2), 32 * (8 + 2 * 4096 + 2)
    vit_decay, vit_bias = 24 * (1024 * 8 + 2 * 1024 * 4 + 1024 * 2), 24 * (8 + 2 * 1024 + 2)
    proj_decay, proj_bias = 1024 * 128 + 128 * 4096, 128 + 4096
    assert count(decay) == llm_decay + vit_decay + proj_decay + 2 * 4096 == 3_465_216
    assert count(no_decay) == llm_bias + vit_bias + proj_bias == 316_080
    assert decay["weight_decay"] == 0.02 and no_decay["weight_decay"] == 0.0
