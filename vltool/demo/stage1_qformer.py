"""The demo world's stage-1 Q-Former: ``demo-qformer-stage1``, the start of the from-scratch baseline.

VPGTrans's training-from-scratch (TFS) baseline starts from a Q-Former that has had BLIP-2's
stage-1 pre-training (PAPERS.md 1), so the demo world has one: the frozen pre-trained tiny ViT +
a fresh Q-Former (the source BLIP-2's shape, plus its text side), query tokens and ``ln_vision``,
trained on the demo images and captions with two of BLIP-2's three stage-1 objectives:

- image-text contrastive (ITC): the best-matching query's projected output against the projected
  text [CLS] (here the tokenizer's BOS), in-batch softmax both ways, temperature 0.07;
- image-grounded text generation (ITG): text tokens attend to every query and causally to the
  earlier text (queries never see the text), next-token loss through an LM head tied to the
  Q-Former's word embeddings.

Image-text matching (ITM, hard-negative mining) is left out: it is the costliest of the three
and the baseline needs only a pre-trained query path. The LM head's bias and the temperature
are training-time only; everything else is saved as an HF ``Blip2ForImageTextRetrieval`` folder
(the format ``vltool convert`` gives LAVIS's ``blip2_pretrained.pth``), with the demo OPT
tokenizer as its text tokenizer. The frozen ViT's outputs are computed once per image (the
encoder is frozen; ``ln_vision`` after it trains), so a step costs only the Q-Former.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vltool.data.vl_dataset import VLDataset, image_preprocessor
from vltool.demo.datasets import read_demo
from vltool.demo.source_blip2 import NUM_QUERY_TOKENS, qformer_config

EMBED = 32  # ITC embedding width (image_text_hidden_size)
MAX_TEXT = 24
TEMPERATURE = 0.07


def build_model(vision, vocab_size: int, seed: int):
    """A fresh Blip2ForImageTextRetrieval around the pre-trained ``vision`` encoder."""
    from transformers import Blip2Config, Blip2ForImageTextRetrieval

    torch.manual_seed(seed)
    qformer = {**qformer_config(vision.config.hidden_size).to_dict(), "use_qformer_text_input": True,
               "vocab_size": vocab_size}
    for key in ("model_type", "transformers_version"):
        qformer.pop(key, None)
    config = Blip2Config(vision_config=vision.config.to_dict(), qformer_config=qformer,
                         num_query_tokens=NUM_QUERY_TOKENS, image_text_hidden_size=EMBED)
    model = Blip2ForImageTextRetrieval(config)
    model.vision_model = vision
    with torch.no_grad():  # LAVIS: queries ~ N(0, 0.02) (transformers leaves them at zero)
        model.query_tokens.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(seed))
    return model


def _text_batch(tokenizer, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """[BOS] caption [EOS], right-padded: (ids, mask)."""
    rows = [[tokenizer.bos_token_id] + tokenizer(c, add_special_tokens=False)["input_ids"][:MAX_TEXT - 2]
            + [tokenizer.eos_token_id] for c in captions]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def _queries(model, image_embeds: torch.Tensor) -> torch.Tensor:
    queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    return model.qformer(query_embeds=queries, encoder_hidden_states=image_embeds).last_hidden_state


def itc_logits(model, image_embeds: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B_img, B_txt] similarities: max over queries of cos(query, text [CLS]) / temperature."""
    image_feats = F.normalize(model.vision_projection(_queries(model, image_embeds)), dim=-1)
    text = model.qformer(query_embeds=model.embeddings(input_ids=ids), query_length=0, attention_mask=mask)
    text_feat = F.normalize(model.text_projection(text.last_hidden_state[:, 0]), dim=-1)
    return torch.einsum("iqd,td->itq", image_feats, text_feat).amax(-1) / TEMPERATURE


def itg_loss(model, lm_bias: torch.Tensor, image_embeds: torch.Tensor, ids: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
    """Next-token loss of the caption given the queries (queries see queries only; text is causal)."""
    n, q, t = ids.shape[0], NUM_QUERY_TOKENS, ids.shape[1]
    queries = model.query_tokens.expand(n, -1, -1)
    full = torch.zeros(n, 1, q + t, q + t, dtype=torch.bool)
    full[:, :, :, :q] = True
    full[:, :, :q, q:] = False
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    full[:, :, q:, q:] = causal & mask.bool()[:, None, None, :]
    hidden = model.qformer(query_embeds=model.embeddings(input_ids=ids, query_embeds=queries), query_length=q,
                           attention_mask=full, encoder_hidden_states=image_embeds).last_hidden_state[:, q:]
    logits = F.linear(hidden[:, :-1], model.embeddings.word_embeddings.weight, lm_bias)
    labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


@torch.no_grad()
def _encode(vision, dataset: VLDataset, batch: int = 256) -> torch.Tensor:
    """The frozen ViT's last hidden states BEFORE ``post_layernorm`` (ln_vision trains), per unique image."""
    out = []
    for start in range(0, len(dataset.images), batch):
        pixels = torch.stack([dataset.images[i] for i in range(start, min(len(dataset.images), start + batch))])
        out.append(vision(pixel_values=pixels, output_hidden_states=True).hidden_states[-1])
    return torch.cat(out)


@torch.no_grad()
def retrieval_accuracy(model, image_embeds: torch.Tensor, captions: list[str], tokenizer) -> float:
    """Image -> text top-1 (in %) among the given images' captions; a hit names the image's own caption text."""
    ids, mask = _text_batch(tokenizer, captions)
    best = itc_logits(model, image_embeds, ids, mask).argmax(1).tolist()
    return 100.0 * sum(captions[j] == captions[i] for i, j in enumerate(best)) / len(captions)


def train_stage1(world: Path, vision, tokenizer, processor, seed: int, steps: int, lr: float = 2e-3,
                 batch_size: int = 64, reporter: Any = None, n_val: int = 100) -> tuple[Any, dict[str, float]]:
    """Train with ITC + ITG; returns (the Blip2ForImageTextRetrieval model, val figures)."""
    from transformers import get_cosine_schedule_with_warmup

    vision.requires_grad_(False).eval()
    preprocess = image_preprocessor(processor)
    train_set = VLDataset(read_demo(world, "caption", "train"), preprocess)
    val_set = VLDataset(read_demo(world, "caption", "val")[:n_val], preprocess)
    train_feats, val_feats = _encode(vision, train_set), _encode(vision, val_set)
    model = build_model(vision, len(tokenizer), seed)
    ln_vision = model.vision_model.post_layernorm
    ln_vision.requires_grad_(True)
    lm_bias = nn.Parameter(torch.zeros(len(tokenizer)))
    params = [p for p in model.parameters() if p.requires_grad] + [lm_bias]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    schedule = get_cosine_schedule_with_warmup(optim, max(1, steps // 10), steps)
    generator = torch.Generator().manual_seed(seed)
    if reporter is not None:
        reporter.start("train stage-1 Q-Former", steps)
    model.train()
    for step in range(1, steps + 1):
        pick = torch.randint(len(train_set.rows), (batch_size,), generator=generator).tolist()
        rows = [train_set.rows[i] for i in pick]
        image_embeds = ln_vision(train_feats[[r[0] for r in rows]])
        ids, mask = _text_batch(tokenizer, [r[2] for r in rows])
        logits = itc_logits(model, image_embeds, ids, mask)
        target = torch.arange(len(rows))
        itc = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        itg = itg_loss(model, lm_bias, image_embeds, ids, mask)
        loss = itc + itg
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        schedule.step()
        if reporter is not None:
            reporter.update(step)
    model.eval()
    with torch.no_grad():
        val_embeds = ln_vision(val_feats)
        captions = [r[2] for r in val_set.rows]
        ids, mask = _text_batch(tokenizer, captions)
        metrics = {"itc_loss": float(itc), "itg_loss": float(itg),
                   "val_itg_loss": float(itg_loss(model, lm_bias, val_embeds, ids, mask)),
                   "val_i2t_top1": retrieval_accuracy(model, val_embeds, captions, tokenizer)}
    return model, metrics


def save_stage1(model, tokenizer, processor, path: Path) -> None:
    """An HF Blip2ForImageTextRetrieval folder with its tokenizer and image processor."""
    config = model.config
    config.architectures = ["Blip2ForImageTextRetrieval"]
    for part in (config, config.vision_config, config.qformer_config, config.text_config):
        part._name_or_path = ""
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    processor.save_pretrained(str(path))
