"""train.frozen_dtype: frozen LLM / ViT matrices live in the autocast dtype; what trains, and the Q-Former, stay fp32."""

from __future__ import annotations

import pytest
import torch
from accelerate.state import AcceleratorState
from support.tiny_models import tiny_clip_mma, tiny_model
from torch.utils.data import Dataset

from vltool.errors import UserError
from vltool.models import vlm
from vltool.models.memory import cast_frozen_towers, frozen_dtype_name, frozen_tower_parameters
from vltool.training.loop import make_accelerator, train
from vltool.training.settings import TrainSettings


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Accelerate keeps one mixed precision per process: these tests switch it, so reset around each."""
    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


class Captions(Dataset):
    def __init__(self, model, n: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        q = model.config.num_query_tokens
        text = torch.randint(3, 20, (n, 6), generator=g)
        self.ids = torch.cat([torch.full((n, q), model.config.image_token_index), text], 1)
        self.pixels = torch.randn(n, 3, 28, 28, generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        labels = self.ids[i].masked_fill(self.ids[i] == self.ids[0, 0], -100)  # the image slots carry no label
        return {"pixel_values": self.pixels[i], "input_ids": self.ids[i],
                "attention_mask": torch.ones_like(self.ids[i]), "labels": labels}


def _train(model, precision: str, frozen: str = "auto", evals: list | None = None):
    settings = TrainSettings(lr=1e-3, schedule="constant", max_steps=3, batch_size=4, precision=precision,
                             frozen_dtype=frozen, log_every=1, num_workers=0)

    def evaluate(m, step: int) -> dict[str, float]:
        # The eval hook runs under the same autocast: a bf16 LLM meets the fp32 projector's output.
        data = Captions(m, 2)
        rows = [data[i] for i in range(2)]
        out = vlm.caption_loss(m, {k: torch.stack([r[k] for r in rows]) for k in rows[0]})
        if evals is not None:
            evals.append(float(out))
        return {"loss": float(out)}

    return train(model, vlm.caption_loss, Captions(model), settings, eval_fn=evaluate,
                 accelerator=make_accelerator(precision, cpu=True))


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_bf16_run_stores_frozen_towers_in_bf16_and_keeps_trainables_and_qformer_fp32(family):
    model, _ = tiny_model(family)
    vlm.set_trainable(model, vlm.WARMUP_PARTS)
    qformer_before = {k: v.clone() for k, v in model.qformer.state_dict().items()}
    evals: list = []
    result = _train(model, "bf16", evals=evals)
    assert result.stopped == "completed" and evals
    trained = result.model
    cast = dict(frozen_tower_parameters(trained))
    assert cast and all(p.dtype == torch.bfloat16 for p in cast.values())
    assert any(k.startswith("language_model.") for k in cast) and any(k.startswith("vision_model.") for k in cast)
    for name, param in trained.named_parameters():
        if param.requires_grad or name.startswith("qformer.") or param.ndim < 2 or name == "query_tokens":
            assert param.dtype == torch.float32, name
    # ln_vision (trained in stage 2) and the frozen Q-Former keep every bit: the artifact saves them.
    assert trained.vision_model.post_layernorm.weight.dtype == torch.float32
    for key, value in trained.qformer.state_dict().items():
        assert torch.equal(value, qformer_before[key]), key
    assert torch.isfinite(torch.tensor([r["loss"] for r in result.history if "loss" in r])).all()


def test_bf16_towers_give_the_loss_of_fp32_towers_under_autocast():
    """Autocast multiplies in bf16 either way; storing the weights in bf16 only moves the rounding."""
    losses = {}
    for frozen in ("fp32", "bf16"):
        model, _ = tiny_model("llama")
        vlm.set_trainable(model, vlm.STAGE2_PARTS)
        result = _train(model, "bf16", frozen)
        losses[frozen] = [r["loss"] for r in result.history if "loss" in r]
        dtypes = {p.dtype for _, p in frozen_tower_parameters(result.model)}
        assert dtypes == {torch.float32 if frozen == "fp32" else torch.bfloat16}
    torch.testing.assert_close(torch.tensor(losses["bf16"]), torch.tensor(losses["fp32"]), rtol=2e-2, atol=0)


def test_fp32_run_leaves_everything_fp32():
    model, _ = tiny_model("opt")
    vlm.set_trainable(model, vlm.WARMUP_PARTS)
    result = _train(model, "no")
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}


def test_mma_towers_are_the_llm_and_clip_not_the_adapters():
    model = tiny_clip_mma()
    names = [n for n, _ in frozen_tower_parameters(model)]
    assert any(".lm." in f".{n}" or n.startswith("lm.") for n in names)
    assert any("vision" in n for n in names)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not trainable & set(names)
    frozen_matrix_bytes = sum(p.numel() * 4 for _, p in frozen_tower_parameters(model))
    assert cast_frozen_towers(model, torch.bfloat16) == frozen_matrix_bytes // 2
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if n in trainable)


def test_frozen_dtype_resolution_and_refusals():
    assert frozen_dtype_name("auto", "bf16") == "bf16"
    assert frozen_dtype_name("auto", "fp16") == "fp16"
    assert frozen_dtype_name("auto", "no") == "fp32"
    assert frozen_dtype_name("auto", "bf16", sharded=True) == "fp32"
    assert frozen_dtype_name("fp32", "bf16") == "fp32"
    model, _ = tiny_model("opt")
    vlm.set_trainable(model, vlm.WARMUP_PARTS)
    # precision auto resolves to fp32 on the CPU: the loop refuses once it knows
    with pytest.raises(UserError, match="frozen_dtype=bf16 needs mixed precision"):
        _train(model, "auto", "bf16")
    # an explicit precision=no is refused when the recipe is read, before any model loads
    with pytest.raises(ValueError, match="frozen_dtype=bf16 needs mixed precision"):
        TrainSettings(max_steps=1, precision="no", frozen_dtype="bf16")
    AcceleratorState._reset_state()
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        _train(model, "bf16", "fp16")
