"""The modality token: isolated by the mask, so every router reads a function of (modality, layer)."""

from __future__ import annotations

import pytest
import torch
from support.tiny_models import mma_llama, mma_opt
from torch import nn

from vltool.models.mma.inject import AdapterSettings, inject, wrappers
from vltool.models.mma.layout import IGNORE, VISUAL
from vltool.models.mma.mma_model import MMAModel
from vltool.models.mma.modality import modality_mask, modality_positions

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class FakeFrontEnd(nn.Module):
    """Any module pixel_values -> [B, n, d] plugs in; this one is a random linear map."""

    def __init__(self, dim: int, tokens: int = 3) -> None:
        super().__init__()
        self.projector = nn.Linear(12, tokens * dim)
        self.tokens, self.dim = tokens, dim

    visual_tokens = property(lambda self: self.tokens)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projector(pixel_values.flatten(1)).view(-1, self.tokens, self.dim)


def perturbed(make, placement: str = "block", router: bool = True) -> MMAModel:
    torch.manual_seed(0)
    lm = make()
    inject(lm, placement, AdapterSettings(dropout=0.0, router=router, temperature=1.0))
    model = MMAModel(lm, FakeFrontEnd(32)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".adapter." in name or name.startswith("modality."):
                p.add_(torch.randn_like(p) * 0.3)
    return model


def image_batch(ids: torch.Tensor, mask: torch.Tensor, modality: list[int], slots: int = 3) -> dict:
    ids = ids.clone()
    for row, m in enumerate(modality):
        if m:
            ids[row, 2:2 + slots] = VISUAL
    n = sum(modality)
    return {"input_ids": ids, "attention_mask": mask, "modality": torch.tensor(modality),
            "pixel_values": torch.randn(n, 3, 2, 2) if n else None}



def test_mask_and_positions() -> None:
    text_mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    mask = modality_mask(text_mask)[:, 0]
    assert mask.shape == (2, 4, 4)
    assert mask[:, 0].tolist() == [[True, False, False, False]] * 2  # the token sees only itself
    assert not mask[:, 1:, 0].any()  # nobody sees the token
    assert mask[0, 1:, 1:].tolist() == torch.ones(3, 3, dtype=torch.bool).tril().tolist()
    assert mask[1, 2:, 1].tolist() == [False, False]  # padding is hidden
    assert modality_positions(text_mask).tolist() == [[0, 0, 1, 2], [0, 0, 0, 1]]


@pytest.mark.parametrize("make", [mma_llama, mma_opt])
def test_router_inputs_depend_on_modality_and_layer_only(make) -> None:
    model = perturbed(make)
    seen: list[torch.Tensor] = []
    hooks = [w.adapter.router.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
             for w in wrappers(model.lm)]
    runs = []
    for seed, length in ((1, 9), (2, 12)):  # different text, images, lengths and padding
        torch.manual_seed(seed)
        ids = torch.randint(3, 40, (4, length))
        mask = torch.ones_like(ids)
        mask[3, : seed + 1] = 0
        seen.clear()
        with torch.no_grad():
            model(image_batch(ids, mask, [1, 0, 1, 0]))
        runs.append(torch.stack(seen))  # [sites, B, d]
    seen.clear()
    with torch.no_grad():
        model.route(torch.tensor([1, 0]))  # the token alone: the routing pass of generation and merge
    alone = torch.stack(seen)
    for h0 in runs:
        assert torch.allclose(h0, runs[0], atol=1e-5)
        assert torch.allclose(h0[:, 0], h0[:, 2], atol=1e-6) and torch.allclose(h0[:, 1], h0[:, 3], atol=1e-6)
        assert torch.allclose(h0[:, 0], alone[:, 0], atol=1e-5) and torch.allclose(h0[:, 1], alone[:, 1], atol=1e-5)
    assert not torch.allclose(runs[0][:, 0], runs[0][:, 1])  # the two modalities are routed apart
    assert not torch.allclose(runs[0][0], runs[0][1])  # and each layer has its own state
    for h in hooks:
        h.remove()


def test_nobody_attends_to_the_modality_token() -> None:
    model = perturbed(mma_llama, router=False)  # no routing: the token could act only through attention
    ids = torch.randint(3, 40, (2, 8))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "modality": torch.tensor([0, 1])}
    with torch.no_grad():
        before = model(batch).logits
        model.modality.weight.mul_(-5.0).add_(1.0)
        assert torch.equal(model(batch).logits, before)


def test_loss_is_on_answer_tokens_and_only_mma_tensors_get_gradients() -> None:
    model = perturbed(mma_opt).train()
    model.set_trainable()
    torch.manual_seed(3)
    ids = torch.randint(3, 40, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    labels = torch.full_like(ids, IGNORE)
    labels[0, 6:] = ids[0, 6:]
    labels[1, 5:8] = ids[1, 5:8]
    batch = {**image_batch(ids, mask, [1, 0]), "labels": labels}
    out = model(batch)
    assert out.logits.shape[:2] == ids.shape
    manual = nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 40), labels[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, manual, atol=1e-5)
    out.loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(model.trainable_state())
    assert all(".adapter." in n or n.startswith(("modality.", "front_end.projector.")) for n in trainable)
    assert all(model.get_parameter(n).grad is not None and model.get_parameter(n).grad.abs().sum() > 0
               for n in trainable)
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
