"""Small fidelity points: LaVIN's CLIP preprocessing, its modality-token init, OPT project_in targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vltool.errors import UserError


def test_clip_front_end_preprocesses_as_lavin() -> None:
    """224 x 224 bicubic resize (no crop, aspect not kept), timm's ImageNet mean / std."""
    from vltool.models.mma.loading import IMAGENET_MEAN, IMAGENET_STD, lavin_image_processor

    image = Image.fromarray((np.random.RandomState(0).rand(60, 180, 3) * 255).astype("uint8"))
    pixels = lavin_image_processor(224)(images=image, return_tensors="pt")["pixel_values"][0]
    expected = torch.tensor(np.asarray(image.resize((224, 224), Image.BICUBIC)).astype("float32") / 255)
    expected = (expected.permute(2, 0, 1) - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(
        IMAGENET_STD)[:, None, None]
    assert pixels.shape == (3, 224, 224) and torch.allclose(pixels, expected, atol=1e-5)


def test_modality_token_starts_as_lavins_embedding() -> None:
    from vltool.models.mma.modality import ModalityToken

    torch.manual_seed(0)
    token = ModalityToken(4096)
    assert 0.97 < float(token.weight.detach().std()) < 1.03  # N(0, 1), PyTorch's nn.Embedding default


def test_opt_with_project_in_is_refused_as_a_target(quick_world: Path, tmp_path: Path) -> None:
    """OPT-350M-style (word_embed_proj_dim != hidden_size): BLIP-2 cannot place visual tokens among its embeddings."""
    from support.run import invoke
    from support.tiny_models import opt_lm
    from transformers import AutoTokenizer

    from vltool.demo.home import demo_model_paths

    tok = AutoTokenizer.from_pretrained(str(demo_model_paths()["demo-opt-s"]))
    folder = tmp_path / "opt-350m-like"
    opt_lm(len(tok) + 2, 32, 2, layers=1, word_embed_proj_dim=16, max_position_embeddings=64).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    with pytest.raises(UserError, match="project_in maps them to 32"):
        invoke(["warmup", "--src", "demo-blip2-opt-s", "--dst", str(folder), "--data", "demo:caption",
                "--out", str(tmp_path / "out"), "data.max_train_samples=8", "train.max_steps=1"])
