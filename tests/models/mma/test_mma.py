"""LaVIN's MM-Adapters: identity init, exact parameter counts, routing by modality, exact folding."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support.run import invoke
from support.tiny_models import mma_llama as _mma_llama
from support.tiny_models import mma_opt

from vltool.errors import UserError
from vltool.models.mma.adapter import MMAdapter
from vltool.models.mma.inject import inject, wrappers
from vltool.models.mma.merge import merge_lm
from vltool.models.mma.mma_model import MMAModel


def mma_llama():
    """Full multi-head attention: the parameter counts below are worked out for it."""
    return _mma_llama(kv_heads=4)


def test_adapter_starts_as_identity_and_has_lavins_shape() -> None:
    adapter = MMAdapter(4096, bottleneck=8, groups=2)
    # A: 4096*8 + 8; B and D group-wise (2 groups of 4 -> 2048): 4096*4 + 4096 each; router 4096*2 + 2
    assert sum(p.numel() for p in adapter.parameters()) == (4096 * 8 + 8) + 2 * (4096 * 4 + 4096) + (4096 * 2 + 2)
    x = torch.randn(2, 5, 4096)
    w = adapter.routing(torch.randn(2, 4096))
    assert torch.equal(adapter(x, w), x) and torch.allclose(w.sum(-1), torch.ones(2))


def test_lavin_7b_trains_exactly_3781296_parameters() -> None:
    from vltool.config.loader import load_recipe
    from vltool.config.shipped import find_recipe
    from vltool.models.mma.count import lavin_table

    table = lavin_table(load_recipe(find_recipe("mma/lavin-7b-scienceqa"), "tune-mma"))
    assert table["trainable"] == 3_781_296
    parts = {row[0]: row[2] for row in table["rows"]}
    states, acts = parts["memory: weights + trainable states (GiB)"], parts[
        "memory: activations, micro-batch 4 x 512 tokens (GiB)"]
    assert 12.5 < states < 14 and acts > 0 and parts["memory estimate (GiB)"] == pytest.approx(states + acts, abs=0.11)
    assert parts["LLM MM-Adapters"] == 2_621_760 and parts["vision MM-Adapters"] == 491_760
    assert parts["visual projection (1024-128-d)"] == 659_584 and parts["modality embedding"] == 8_192


def _perturbed(lm, placement: str, router: bool = True) -> MMAModel:
    torch.manual_seed(0)
    lm = copy.deepcopy(lm)
    inject(lm, placement, dropout=0.0, router=router, temperature=1.0)
    model = MMAModel(lm, None).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".adapter." in name or name.startswith("modality"):
                p.add_(torch.randn_like(p) * 0.2)
    return model


def test_routing_depends_on_the_modality_only() -> None:
    model = _perturbed(mma_llama(), "attn")
    with torch.no_grad():
        model.route(torch.tensor([1, 1, 0]))
    weights = [w.weights for w in wrappers(model.lm)]
    assert all(torch.allclose(w[0], w[1], atol=1e-6) for w in weights)  # same modality, same weights
    assert all(not torch.allclose(w[0], w[2]) for w in weights)  # the modalities are routed apart
    with torch.no_grad():
        model.route(torch.tensor([0]))
    assert all(torch.allclose(w.weights[0], old[2], atol=1e-6) for w, old in zip(wrappers(model.lm), weights))


@pytest.mark.parametrize("make", [mma_llama, mma_opt])
@pytest.mark.parametrize("placement", ["attn", "block"])
def test_folded_model_gives_the_same_logits_and_greedy_output(make, placement: str) -> None:
    model = _perturbed(make(), placement)
    ids = torch.randint(3, 40, (2, 9))
    mask = torch.ones_like(ids)
    for modality in (0, 1):
        batch = {"input_ids": ids, "attention_mask": mask, "modality": torch.tensor([modality] * 2)}
        with torch.no_grad():
            adapted = model(batch).logits
            merged = merge_lm(copy.deepcopy(model), modality).lm
            assert (adapted - merged(input_ids=ids, attention_mask=mask).logits).abs().max() <= 1e-4
            model.route(torch.tensor([modality] * 2))
            kw = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
            a = model.lm.generate(inputs_embeds=model.embed(batch), attention_mask=mask, **kw)
            b = merged.generate(input_ids=ids, attention_mask=mask, **kw)[:, ids.shape[1]:]
        assert torch.equal(a, b)
    assert "MMAdapter" not in str(merged) and type(merged) is type(make())


def test_merge_refuses_non_finite_weights() -> None:
    model = _perturbed(mma_llama(), "attn")
    with torch.no_grad():
        wrappers(model.lm)[0].adapter.down.weight[0, 0] = float("nan")
    with pytest.raises(UserError, match="NaN or inf"):
        merge_lm(model, "image")




def test_tune_mma_merge_and_eval_on_the_quick_world(quick_world: Path, tmp_path: Path) -> None:
    from vltool.data.specs import load_spec
    from vltool.eval.predictors import GenerationSettings, load_predictor

    vpg, mma = tmp_path / "vpg", tmp_path / "mma"
    invoke(["transfer", "--src", "demo-blip2-opt-s", "--dst", "demo-llama", "--data", "demo:caption", "--out",
            str(vpg), "warmup.max_steps=1", "train.max_steps=1", "data.max_train_samples=32", "train.batch_size=16"])
    invoke(["tune-mma", "-r", "demo/tune-mma", "--model", str(vpg), "--out", str(mma), "--val-data", "demo:sqa",
            "train.max_steps=3", "train.batch_size=8", "data.max_train_samples=48", "data.max_val_samples=4"])
    manifest = json.loads((mma / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert manifest["kind"] == "adapters" and metrics["steps"] == 3
    assert 0 < metrics["trainable_params"] < metrics["total_params"] / 10
    assert {"before/demo:sqa/accuracy", "after/demo:sqa/accuracy"} <= metrics.keys()
    tensors = load_file(mma / "adapters.safetensors")
    assert sum(t.numel() for t in tensors.values()) == metrics["trainable_params"]
    assert all(".adapter." in k or k.startswith(("modality.", "front_end.projector.")) for k in tensors)
    samples = load_spec("demo:sqa", "val")
    settings = GenerationSettings(max_new_tokens=8)
    for modality, subset in (("image", [s for s in samples if s.image][:3]),
                             ("text", [s for s in samples if not s.image][:3])):
        merged = tmp_path / f"merged-{modality}"
        invoke(["merge", str(mma), "--out", str(merged), "--modality", modality])
        config = json.loads((merged / "config.json").read_text())
        assert config["text_config"]["attention_bias"] is True
        assert load_predictor(str(merged)).generate(subset, settings) == \
            load_predictor(str(mma)).generate(subset, settings)
