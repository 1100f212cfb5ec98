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
    assert model.lm.model.embed_tokens.weight.is_meta and model.front_end.num_tokens == 6
    parts = {row.part: row for row in parameter_table(model)}
    assert parts["LLM MM-Adapters"].trainable == 2_621_760 == 32 * 81_930
    assert parts["vision MM-Adapters"].trainable == 491_760 == 24 * 20_490
    assert parts["visual projection"].trainable == 659_584 == 1024 * 128 + 128 + 128 * 4096 + 4096
    assert parts["modality embedding"].trainable == 8_192
    assert parts["LLM (frozen)"].trainable == 0 == parts["vision encoder (frozen)"].trainable
    assert trainable_count(model) == LAVIN_7B_TRAINABLE == 3_781_296
    assert sum(t.numel() for t in model.trainable_state().values()) == LAVIN_7B_TRAINABLE
