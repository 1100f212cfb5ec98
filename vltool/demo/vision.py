"""The demo world's frozen vision encoder: a tiny Blip2VisionModel taught the world's attributes.

BLIP-2 inherits a pre-trained, frozen ViT; its quality caps every VPG built on it (DEMO_NOTES),
so it is pre-trained on attribute classification (colour, shape, size, position from the CLS
token) and its per-attribute validation accuracy is reported before any VPG is trained on it.
Note transformers' ``Blip2VisionConfig.initializer_range`` defaults to 1e-10: set to 0.02 here.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import transformers
from torch import nn
from torch.utils.data import TensorDataset
from transformers import Blip2VisionConfig, Blip2VisionModel

from vltool.demo.render import CANVAS, render
from vltool.demo.world import COLOURS, POSITIONS, SHAPES, SIZES, Scene, random_scene
from vltool.training.loop import make_accelerator, train
from vltool.training.progress import Reporter
from vltool.training.settings import TrainSettings

ATTRIBUTES = {"colour": list(COLOURS), "shape": list(SHAPES), "size": list(SIZES), "pos": list(POSITIONS)}
MEAN = STD = [0.5, 0.5, 0.5]


def image_processor():
    """BLIP's image processor at the demo size (the PIL backend: no torchvision needed)."""
    cls = getattr(transformers, "BlipImageProcessorPil", None) or transformers.BlipImageProcessor
    return cls(size={"height": CANVAS, "width": CANVAS}, image_mean=MEAN, image_std=STD,
                              do_convert_rgb=True)


def to_pixels(images: list) -> torch.Tensor:
    """Fast path equal to ``image_processor()`` for 32x32 RGB images: scale to [-1, 1]."""
    array = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 255.0
    return torch.from_numpy((array - 0.5) / 0.5).permute(0, 3, 1, 2).contiguous()


def vision_config() -> Blip2VisionConfig:
    return Blip2VisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=3,
                             num_attention_heads=4,
                             image_size=CANVAS, patch_size=8, initializer_range=0.02)


class AttributeProbe(nn.Module):
    """Vision model + one linear head per attribute on the (post-layernorm) CLS token."""

    def __init__(self, vision: Blip2VisionModel) -> None:
        super().__init__()
        self.vision = vision
        width = vision.config.hidden_size
        self.heads = nn.ModuleDict({k: nn.Linear(width, len(v)) for k, v in ATTRIBUTES.items()})

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.vision(pixel_values=pixels).pooler_output
        return {k: head(pooled) for k, head in self.heads.items()}


def scene_labels(scenes: list[Scene]) -> torch.Tensor:
    return torch.tensor([[ATTRIBUTES[k].index(getattr(s, k)) for k in ATTRIBUTES] for s in scenes])


def render_set(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(seed)
    scenes = [random_scene(rng) for _ in range(n)]
    return to_pixels([render(s, rng) for s in scenes]), scene_labels(scenes)


def attribute_accuracy(probe: AttributeProbe, pixels: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        logits = probe(pixels)
    return {k: float((logits[k].argmax(-1) == labels[:, i]).float().mean()) for i, k in enumerate(ATTRIBUTES)}


def pretrain_vision(seed: int, reporter: Reporter | None = None, steps: int = 400,
                    n_train: int = 4000) -> tuple[Blip2VisionModel, dict[str, float]]:
    """Train the encoder on attribute classification; returns it and per-attribute val accuracy."""
    torch.manual_seed(seed)
    probe = AttributeProbe(Blip2VisionModel(vision_config()))
    pixels, labels = render_set(n_train, seed + 101)
    val_pixels, val_labels = render_set(500, seed + 202)

    def loss_fn(model: AttributeProbe, batch) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        return sum(nn.functional.cross_entropy(logits[k], y[:, i]) for i, k in enumerate(ATTRIBUTES))

    settings = TrainSettings(lr=2e-3, schedule="cosine", warmup_steps=20, min_lr_ratio=0.05, max_steps=steps,
                             batch_size=64, weight_decay=0.05, max_grad_norm=1.0, precision="no", seed=seed,
                             log_every=25)
    result = train(probe, loss_fn, TensorDataset(pixels, labels), settings, reporter=reporter,
                   accelerator=make_accelerator("no", cpu=True), task="pre-train vision encoder",
                   eval_fn=lambda m, step: attribute_accuracy(m, val_pixels, val_labels))
    return result.model.vision.eval(), result.final_metrics
