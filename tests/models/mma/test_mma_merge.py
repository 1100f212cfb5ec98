"""Merging: folded models give the unmerged logits and greedy outputs, load in plain transformers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from support.tiny_models import mma_llama, mma_opt, tiny_clip
from transformers import LlamaForCausalLM

from vltool.errors import UserError
from vltool.models.mma.inject import AdapterSettings, inject, inject_vision, wrappers
from vltool.models.mma.merge import merge_lm, merged_marker, require_foldable_front_end
from vltool.models.mma.mma_model import MMAModel

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def perturbed(make, placement: str) -> MMAModel:
    torch.manual_seed(0)
    lm = make()
    inject(lm, placement, AdapterSettings(dropout=0.0, temperature=1.0))
    model = MMAModel(lm).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".adapter." in name or name.startswith("modality."):
                p.add_(torch.randn_like(p) * 0.3)
    return model


@pytest.mark.parametrize("make", [mma_llama, mma_opt])
@pytest.mark.parametrize("placement", ["attn", "block"])
def test_merged_model_gives_the_same_logits_and_greedy_outputs(make, placement: str) -> None:
    model = perturbed(make, placement)
    torch.manual_seed(1)
    ids = torch.randint(3, 40, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding: generation batches look like this
    merged_logits = []
    for modality in (0, 1):
        batch = {"input_ids": ids, "attention_mask": mask, "modality": torch.tensor([modality] * 2)}
        merged = copy.deepcopy(model)
        result = merge_lm(merged, modality)
        lm = result.lm
        assert result.changed and type(lm) is type(make()) and not wrappers(lm)
        with torch.no_grad():
            adapted = model(batch).logits  # modality token in the sequence, one forward
            plain = lm(input_ids=ids, attention_mask=mask).logits  # no modality token at all
            assert (adapted - plain)[mask.bool()].abs().max() <= 1e-4
            greedy = {"max_new_tokens": 6, "pad_token_id": 0}
            ours = model.generate_ids(batch, **greedy)  # KV-cached, routed by the modality-token pass
            theirs = lm.generate(input_ids=ids, attention_mask=mask, do_sample=False, **greedy)[:, ids.shape[1]:]
        assert torch.equal(ours, theirs)
        merged_logits.append(plain)
        marker = merged_marker(lm)
        assert marker["modality"] == ["text", "image"][modality] and marker["placement"] == placement
    assert not torch.allclose(merged_logits[0], merged_logits[1])  # the modalities are really routed apart


def test_merged_llama_saves_and_loads_in_plain_transformers(tmp_path: Path) -> None:
    model = perturbed(mma_llama, "block")
    ids = torch.randint(3, 40, (1, 7))
    lm = merge_lm(model, "image").lm
    assert lm.config.attention_bias and lm.config.mlp_bias
    lm.save_pretrained(tmp_path)
    loaded, info = LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert loaded.model.layers[0].self_attn.o_proj.bias is not None
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, lm(input_ids=ids).logits, atol=1e-6)
    assert merged_marker(loaded)["modality"] == "image"
    again = merge_lm(MMAModel(loaded), "text")  # re-running on a merged model: says so, changes nothing
    state = {k: v.clone() for k, v in loaded.state_dict().items()}
    assert not again.changed and "already merged (modality image)" in again.message
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in state.items())
    with pytest.raises(UserError, match="modality"):
        merge_lm(perturbed(mma_llama, "attn"), "audio")


def test_merge_refuses_non_finite_weights_and_vision_adapters() -> None:
    model = perturbed(mma_opt, "attn")
    with torch.no_grad():
        wrappers(model.lm)[1].adapter.up_d.bias[0] = float("inf")
    with pytest.raises(UserError, match="NaN or inf"):
        merge_lm(model, "text")
    assert len(wrappers(model.lm)) == 2  # nothing was folded
    vision = tiny_clip(2)

    inject_vision(vision)
    with pytest.raises(UserError, match="vision MM-Adapters"):
        require_foldable_front_end(vision)
