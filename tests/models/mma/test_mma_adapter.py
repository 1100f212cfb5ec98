"""MM-Adapter: LaVIN's shape and parameter count, identity at init, the affine form merge folds."""

from __future__ import annotations

import pytest
import torch
from support.tiny_models import mma_llama, mma_opt, vision_config
from transformers import Blip2VisionModel

from vltool.errors import UserError
from vltool.models.mma.adapter import AdaptedNorm, MMAdapter
from vltool.models.mma.inject import AdapterSettings, inject, inject_vision, sites, wrappers

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_parameter_count_matches_lavin_per_layer() -> None:
    with torch.device("meta"):
        llm, clip = MMAdapter(4096), MMAdapter(1024)
    # A d*8+8; B and D: 2 groups of (4 -> d/2) = d*4 weights + d biases each; router d*2+2
    assert sum(p.numel() for p in llm.parameters()) == (4096 * 8 + 8) + 2 * (4096 * 4 + 4096) + (4096 * 2 + 2) == 81_930
    assert sum(p.numel() for p in clip.parameters()) == 20_490
    assert 32 * 81_930 == 2_621_760 and 24 * 20_490 == 491_760


def test_adapter_starts_as_identity_and_up_projections_are_block_diagonal() -> None:
    torch.manual_seed(0)
    adapter = MMAdapter(16, bottleneck=8, groups=2)
    x = torch.randn(3, 5, 16)
    weights = adapter.routing(torch.randn(3, 16))
    assert torch.equal(adapter(x, weights), x) and torch.allclose(weights.sum(-1), torch.ones(3))
    with torch.no_grad():
        adapter.up_b.weight.normal_()
    dense = adapter.dense_up(adapter.up_b)
    assert dense.shape == (16, 8) and not dense[:8, 4:].any() and not dense[8:, :4].any()


@pytest.mark.parametrize("router", [True, False])
def test_affine_form_equals_the_adapter_in_eval_mode(router: bool) -> None:
    torch.manual_seed(0)
    adapter = MMAdapter(16, bottleneck=8, groups=2, scale=0.7, router=router, temperature=3.0).eval()
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(1, 4, 16)
    w = adapter.routing(torch.randn(1, 16))
    p_mat, c = adapter.affine(w[0] if w is not None else None)
    assert torch.allclose(adapter(x, w), x @ p_mat.T + c, atol=1e-5)


@pytest.mark.parametrize("make,norms", [(mma_llama, ("input_layernorm", "post_attention_layernorm")),
                                        (mma_opt, ("self_attn_layer_norm", "final_layer_norm"))])
def test_injection_wraps_the_transformers_norms_and_keeps_outputs_at_init(make, norms) -> None:
    torch.manual_seed(0)
    lm = make().eval()
    ids = torch.randint(3, 40, (2, 7))
    before = lm(input_ids=ids).logits
    added = inject(lm, "block", AdapterSettings(dropout=0.0))
    layer = (lm.model.layers if hasattr(lm.model, "layers") else lm.model.decoder.layers)[0]
    assert len(added) == 4 and all(isinstance(getattr(layer, n), AdaptedNorm) for n in norms)
    for w in added:  # routing pass not needed at init: B = D = 0 and weights come from position 0
        w.rows = ids.shape[0]
    assert torch.allclose(lm(input_ids=ids).logits, before, atol=1e-6)
    assert len(sites(make(), "attn")) == 2
    with pytest.raises(UserError, match="already has MM-Adapters"):
        inject(lm, "attn")
    with pytest.raises(UserError, match="placement"):
        inject(make(), "ffn")


def test_blip2_vision_adapters_after_layer_norm1() -> None:
    torch.manual_seed(0)
    vision = Blip2VisionModel(vision_config(layers=2)).eval()  # initializer_range 0.02: not near-zero weights

    pixels = torch.randn(2, 3, 28, 28)
    before = vision(pixel_values=pixels).last_hidden_state
    added = inject_vision(vision, AdapterSettings(dropout=0.0))
    assert len(added) == 2 and wrappers(vision) == added
    assert all(isinstance(layer.layer_norm1, AdaptedNorm) for layer in vision.encoder.layers)
    assert torch.allclose(vision(pixel_values=pixels).last_hidden_state, before, atol=1e-6)
    with pytest.raises(UserError, match="CLIP and BLIP-2 ViTs"):
        inject_vision(mma_llama())
