"""The demo world's source BLIP-2 model: ``demo-blip2-opt-s``.

The pre-trained tiny ViT (frozen) + a fresh Q-Former, query tokens and projector, trained with a
captioning loss on frozen demo-opt-s, then saved as a normal HF ``Blip2ForConditionalGeneration``
folder with its ``Blip2Processor`` so vltool reads it through the same code path as
Salesforce/blip2-opt-2.7b. Query tokens start at normal(0, 0.02) as in LAVIS (transformers
initialises them to zero). After saving, the folder is loaded back with plain transformers and
captions val images through ``Blip2Processor`` + ``generate``: the figures in its build.json
are those of the saved folder, not of an object that never touched the disk.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Blip2Processor, Blip2QFormerConfig, Blip2QFormerModel

from vltool.data.vl_collate import VLCollator
from vltool.data.vl_dataset import VLDataset, image_preprocessor
from vltool.demo.datasets import caption_scores, read_demo
from vltool.demo.vision import image_processor
from vltool.models import vlm
from vltool.sources.hf_blip2 import save_blip2_folder
from vltool.training.loop import make_accelerator, train
from vltool.training.progress import Reporter
from vltool.training.settings import TrainSettings

NUM_QUERY_TOKENS = 8
MAX_CAPTION_TOKENS = 24


def qformer_config(vision_width: int) -> Blip2QFormerConfig:
    return Blip2QFormerConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=256,
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
        preds += vlm.generate(model, layout, pixels, [r[1] for r in rows], max_new_tokens=MAX_CAPTION_TOKENS)
    return caption_scores(preds, samples)


def train_source(world: Path, vision, lm, tokenizer, processor, seed: int, steps: int = 400, lr: float = 3e-3,
                 reporter: Reporter | None = None, n_val: int = 200) -> tuple[object, dict[str, float]]:
    """Train the source VPG on frozen demo-opt-s; returns the assembled model and val quality."""
    qformer, queries, projector = fresh_vpg_parts(vision.config.hidden_size, lm.config.hidden_size, seed)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    model = vlm.assemble(vision, qformer, queries, projector, lm, image_token)
    vlm.set_trainable(model, ("qformer", "query_tokens", "ln_vision", "projector"))
    layout = vlm.VLTextLayout(tokenizer, NUM_QUERY_TOKENS, image_token, max_answer_tokens=MAX_CAPTION_TOKENS)
    preprocess = image_preprocessor(processor)
    train_set = VLDataset(read_demo(world, "caption", "train"), preprocess)
    val_samples = read_demo(world, "caption", "val")[:n_val]
    val_set = VLDataset(val_samples, preprocess)
    settings = TrainSettings(lr=lr, schedule="cosine", warmup_steps=20, min_lr_ratio=0.05, max_steps=steps,
                             batch_size=64, weight_decay=0.05, max_grad_norm=1.0, precision="no", seed=seed,
                             log_every=25)
    result = train(model, vlm.caption_loss, train_set, settings, collate_fn=VLCollator(train_set, layout),
                   reporter=reporter, accelerator=make_accelerator("no", cpu=True), task="train source VPG",
                   eval_fn=lambda m, step: evaluate_captions(m, layout, val_set, val_samples))
    return result.model.eval(), result.final_metrics


def save_source(model, tokenizer, path: Path) -> None:
    """An HF BLIP-2 folder: weights, config (image_token_index, num_query_tokens) and processor."""
    model.config.num_query_tokens = NUM_QUERY_TOKENS
    model.config.image_token_index = tokenizer.convert_tokens_to_ids("<image>")
    top = model.config
    for config in (top, top.vision_config, top.qformer_config, top.text_config):
        config._name_or_path = ""  # no build-time temp paths in the saved config

    save_blip2_folder(model, tokenizer, image_processor(), path)


@torch.no_grad()
def check_saved_folder(path: Path, world: Path, n: int = 200) -> dict[str, float]:
    """Caption val images with plain transformers from the saved folder (the users' code path).

    Returns ``hf_scene_acc`` / ``hf_attr_acc`` (in %) on the same first ``n`` val images as
    ``train_source``'s figures, computed from ``Blip2Processor(images, text="")`` +
    ``Blip2ForConditionalGeneration.generate``: equal figures mean the saved folder reproduces
    the trained model.
    """
    from PIL import Image
    from transformers import Blip2ForConditionalGeneration

    model = Blip2ForConditionalGeneration.from_pretrained(str(path)).eval()
    processor = Blip2Processor.from_pretrained(str(path))
    samples = read_demo(world, "caption", "val")[:n]
    images = []
    for sample in samples:
        with Image.open(sample.image) as handle:
            images.append(handle.convert("RGB"))
    inputs = processor(images=images, text=[""] * len(images), return_tensors="pt", padding=True)
    tokenizer = processor.tokenizer
    out = model.generate(**inputs, max_new_tokens=MAX_CAPTION_TOKENS, do_sample=False,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    prompt_len = inputs["input_ids"].shape[1]
    new = out[:, prompt_len:] if out.shape[1] > prompt_len else out  # some versions return only new tokens
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    scores = caption_scores([t.strip() for t in texts], samples)
    return {"hf_scene_acc": scores["scene_acc"], "hf_attr_acc": scores["attr_acc"]}
