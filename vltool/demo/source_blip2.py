"""The demo world's source BLIP-2 model: ``demo-blip2-opt-s``.

The pre-trained tiny ViT (frozen) + a fresh Q-Former, query tokens and projector, trained with a
captioning loss on frozen demo-opt-s, then saved as a normal HF ``Blip2ForConditionalGeneration``
folder with its ``Blip2Processor`` so vltool reads it through the same code path as
Salesforce/blip2-opt-2.7b. Query tokens start at normal(0, 0.02) as in LAVIS (transformers
initialises them to zero).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Blip2QFormerConfig, Blip2QFormerModel

from vltool.data.vl_collate import VLCollator
from vltool.data.vl_dataset import VLDataset
from vltool.demo.datasets import caption_scores, read_demo
from vltool.models import vlm
from vltool.training.loop import make_accelerator, train
from vltool.training.progress import Reporter
from vltool.training.settings import TrainSettings

NUM_QUERY_TOKENS = 8


def qformer_config(vision_width: int) -> Blip2QFormerConfig:
    return Blip2QFormerConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                              encoder_hidden_size=vision_width, cross_attention_frequency=1,
                              max_position_embeddings=64, initializer_range=0.02,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def fresh_vpg_parts(vision_width: int, llm_width: int, seed: int) -> tuple:
    """A randomly initialised Q-Former, query tokens and projector (BLIP-2 / from-scratch init)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    qformer = Blip2QFormerModel(qformer_config(vision_width))
    queries = torch.randn(1, NUM_QUERY_TOKENS, qformer.config.hidden_size, generator=generator) * 0.02
    projector = torch.nn.Linear(qformer.config.hidden_size, llm_width)
    return qformer, queries, projector


def evaluate_captions(model, layout, dataset: VLDataset, samples, batch_size: int = 100) -> dict[str, float]:
    preds = []
    for start in range(0, len(samples), batch_size):
        rows = dataset.rows[start:start + batch_size]
        pixels = torch.stack([dataset.images[r[0]] for r in rows])
        preds += vlm.generate(model, layout, pixels, [r[1] for r in rows], max_new_tokens=16)
    return caption_scores(preds, samples)


def train_source(world: Path, vision, lm, tokenizer, preprocess, seed: int, steps: int = 400, lr: float = 5e-3,
                 reporter: Reporter | None = None) -> tuple[object, dict[str, float]]:
    """Train the source VPG on frozen demo-opt-s; returns the assembled model and val quality."""
    qformer, queries, projector = fresh_vpg_parts(vision.config.hidden_size, lm.config.hidden_size, seed)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    model = vlm.assemble(vision, qformer, queries, projector, lm, image_token)
    vlm.set_trainable(model, ("qformer", "query_tokens", "ln_vision", "projector"))
    layout = vlm.VLTextLayout(tokenizer, NUM_QUERY_TOKENS, image_token, max_answer_tokens=24)
    train_set = VLDataset(read_demo(world, "caption", "train"), preprocess)
    val_samples = read_demo(world, "caption", "val")[:200]
    val_set = VLDataset(val_samples, preprocess)
    settings = TrainSettings(lr=lr, schedule="cosine", warmup_steps=20, min_lr_ratio=0.05, max_steps=steps,
                             batch_size=64, weight_decay=0.05, max_grad_norm=1.0, precision="no", seed=seed,
                             log_every=25)
    result = train(model, vlm.caption_loss, train_set, settings, collate_fn=VLCollator(train_set, layout),
                   reporter=reporter, accelerator=make_accelerator("no", cpu=True), task="train source VPG",
                   eval_fn=lambda m, step: evaluate_captions(m, layout, val_set, val_samples))
    return result.model.eval(), result.final_metrics
