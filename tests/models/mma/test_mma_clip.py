"""LaVIN's CLIP front end: [CLS] after every k-th block, per-image routing, end to end with an LM."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support.tiny_models import mma_llama, tiny_clip

from vltool.errors import UserError
from vltool.models.mma.build import build_clip_mma
from vltool.models.mma.clip_frontend import ClipFrontEnd
from vltool.models.mma.count import trainable_count
from vltool.models.mma.inject import AdapterSettings, inject_vision, wrappers
from vltool.models.mma.layout import IGNORE, VISUAL
from vltool.models.mma.mma_model import MMAModel

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_front_end_takes_the_cls_token_after_every_kth_block() -> None:
    torch.manual_seed(0)
    vision = tiny_clip(4)
    reference = copy.deepcopy(vision)
    inject_vision(vision, AdapterSettings(dropout=0.0))  # identity at init
    front = ClipFrontEnd(vision, llm_width=48, visual_tokens=2, hidden=16)
    pixels = torch.randn(3, 3, 28, 28)
    with torch.no_grad():
        states = reference(pixel_values=pixels, output_hidden_states=True).hidden_states
        expected = front.projector(torch.stack([states[2][:, 0], states[4][:, 0]], dim=1))
        assert torch.allclose(front(pixels), expected, atol=1e-5)
    assert front.visual_tokens == 2 and front(pixels).shape == (3, 2, 48)
    assert sum(p.numel() for p in front.projector.parameters()) == 32 * 16 + 16 + 16 * 48 + 48
    try:
        ClipFrontEnd(tiny_clip(4), 48, visual_tokens=3)
        raise AssertionError("3 tokens from 4 blocks must be refused")
    except UserError as err:
        assert "visual_tokens=3" in str(err)


def test_vision_adapters_route_each_image_from_itself() -> None:
    torch.manual_seed(0)
    vision = tiny_clip(2)
    inject_vision(vision, AdapterSettings(dropout=0.0, temperature=1.0))
    with torch.no_grad():
        for name, p in vision.named_parameters():
            if ".adapter." in name:
                p.add_(torch.randn_like(p) * 0.3)
        pixels = torch.randn(3, 3, 28, 28)
        together = vision(pixel_values=pixels).last_hidden_state
        weights = torch.stack([w.weights for w in wrappers(vision)])  # [blocks, images, 2]
        alone = torch.cat([vision(pixel_values=pixels[i:i + 1]).last_hidden_state for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)  # no batch neighbour changes an image's features
    assert weights.shape == (2, 3, 2) and not torch.allclose(weights[:, 0], weights[:, 1])


def tiny_lavin(placement: str = "attn") -> MMAModel:
    torch.manual_seed(0)
    lm = mma_llama(kv_heads=4)
    return build_clip_mma(lm, tiny_clip(4), AdapterSettings(), placement, visual_tokens=2)


def test_clip_mma_model_trains_saves_and_generates(tmp_path: Path) -> None:
    model = tiny_lavin()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert sum(".vision." in n and ".adapter." in n for n in trainable) == 4 * 8  # 4 blocks x weight and bias of A, B, D, router
    ids = torch.randint(3, 40, (2, 8))
    ids[0, 1:3] = VISUAL
    labels = torch.full_like(ids, IGNORE)
    labels[:, 5:] = ids[:, 5:]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "modality": torch.tensor([1, 0]),
             "pixel_values": torch.randn(1, 3, 28, 28), "labels": labels}

    model.train()
    loss = model(batch).loss
    loss.backward()
    assert torch.isfinite(loss) and model.front_end.projector[0].weight.grad is not None
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    model.eval()
    model.save_trainable(tmp_path / "adapters.safetensors")
    saved = load_file(tmp_path / "adapters.safetensors")
    assert set(saved) == trainable and sum(t.numel() for t in saved.values()) == trainable_count(model)
    fresh = tiny_lavin()
    fresh.load_trainable(tmp_path / "adapters.safetensors")
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(batch).logits, model(batch).logits)
    with pytest.raises(UserError, match="does not fit"):
        tiny_lavin("block").load_trainable(saved)
    new = model.generate_ids({k: v for k, v in batch.items() if k != "labels"}, max_new_tokens=3, pad_token_id=0)
    assert new.shape == (2, 3)


def test_tune_mma_with_the_clip_front_end_trains_merges_and_evaluates(quick_world: Path, tmp_path: Path) -> None:
    """--front-end clip end to end: an LLM + a CLIP folder -> adapters -> merged plain LLM folder + front end."""
    import json

    from support.run import invoke
    from transformers import AutoModelForCausalLM, CLIPImageProcessor

    from vltool.artifacts import read_artifact
    from vltool.data.specs import load_spec
    from vltool.eval.predictors import GenerationSettings, load_predictor

    clip = tmp_path / "clip"
    tiny_clip(4).save_pretrained(str(clip))
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(str(clip))
    mma = tmp_path / "mma"
    invoke(["tune-mma", "-r", "demo/tune-mma", "--model", "demo-llama", "--front-end", "clip", "--vision", str(clip),
            "--out", str(mma), "visual_tokens=2", "adapter.vision=true", "adapter.placement=attn",
            "train.max_steps=2", "train.batch_size=8", "data.max_train_samples=24", "data.val=[]"])
    art = read_artifact(mma)
    assert art.manifest["metrics"]["steps"] == 2 and set(art.manifest["inputs"]) == {"base", "vision"}
    tensors = load_file(mma / "adapters.safetensors")
    assert any(k.startswith("front_end.vision.") and ".adapter." in k for k in tensors)  # vision adapters train
    d = AutoModelForCausalLM.from_pretrained(art.manifest["inputs"]["base"]["source"]).config.hidden_size
    projector = sum(t.numel() for k, t in tensors.items() if k.startswith("front_end.projector."))
    assert projector == 32 * 128 + 128 + 128 * d + d  # LaVIN's Linear(vision->128)-SiLU-Linear(128->d)

    merged = tmp_path / "merged"
    invoke(["merge", str(mma), "--out", str(merged), "--modality", "image"])
    assert read_artifact(merged).manifest["front_end"] == "clip"
    plain = AutoModelForCausalLM.from_pretrained(str(merged))  # plain transformers loads the merged LLM
    assert plain.config.attention_bias is True and json.loads((merged / "front_end" / "mma.json").read_text())
    samples = [s for s in load_spec("demo:sqa", "val") if s.image][:3]
    settings = GenerationSettings(max_new_tokens=6)
    assert load_predictor(str(merged)).generate(samples, settings) == load_predictor(str(mma)).generate(samples,
                                                                                                     settings)
