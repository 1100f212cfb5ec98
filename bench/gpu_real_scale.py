"""Real-scale VPGTrans training steps with random weights: throughput, memory, feature-cache gain.

Builds BLIP-2's VPG (EVA ViT-g/14 + Q-Former, 32 queries) in front of a 7B LLaMA-shaped LM from
the shipped architecture JSONs, random weights (no download), frozen parts in bf16, trainables
in fp32 under bf16 autocast, and runs vltool's own training loop for:
  1. warm-up (projector only) reading cached Q-Former outputs (the feature cache),
  2. warm-up recomputing the frozen ViT + Q-Former every step (--no-feature-cache),
  3. stage 2 (Q-Former + queries + ln_vision + projector).
Prints one JSON object with samples/s per phase, the cache speed-up ratio and peak memory.

    python bench/gpu_real_scale.py [--target llama-7b|opt-6.7b] [--steps 12] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.data import Dataset

from vltool.models import vlm
from vltool.models.meta_count import arch, meta_blip2
from vltool.training.loop import make_accelerator, train
from vltool.training.settings import TrainSettings


class Synthetic(Dataset):
    """Random images and token ids laid out as vltool lays out captions (queries + BOS + text)."""

    def __init__(self, n: int, q: int, text_len: int, vocab: int, image_token: int, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.pixels = torch.randn(n, 3, size, size, generator=g)
        text = torch.randint(3, vocab - 1, (n, text_len), generator=g)
        self.ids = torch.cat([torch.full((n, q), image_token), text], 1)
        self.labels = torch.cat([torch.full((n, q), -100), text], 1)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> int:
        return i


def random_init_(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        with torch.no_grad():
            if p.ndim == 1:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.normal_(0.0, 0.02)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="blip2-opt-2.7b")
    ap.add_argument("--target", default="llama-7b")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--text-len", type=int, default=32)
    args = ap.parse_args()
    device = torch.device("cuda")
    source, target = arch(args.source), arch(args.target)["text"]
    model = meta_blip2(source, target)
    image_token = target["vocab_size"] - 1
    model.config.image_token_index = image_token
    model.to_empty(device=device)
    random_init_(model)
    model.to(torch.bfloat16)
    q = source["num_query_tokens"]
    data = Synthetic(args.batch * (args.steps + 2), q, args.text_len, target["vocab_size"], image_token,
                     source["vision"]["image_size"])
    accelerator = make_accelerator("bf16")
    results: dict[str, object] = {"gpu": torch.cuda.get_device_name(), "source": args.source,
                                  "target": args.target, "batch": args.batch, "text_tokens": args.text_len}

    def collate_pixels(idx):
        return {"pixel_values": data.pixels[idx].to(torch.bfloat16), "input_ids": data.ids[idx],
                "attention_mask": torch.ones_like(data.ids[idx]), "labels": data.labels[idx]}

    def run(phase: str, trainable: tuple[str, ...], collate) -> None:
        model.requires_grad_(False)
        parts = {"projector": model.language_projection, "qformer": model.qformer,
                 "ln_vision": model.vision_model.post_layernorm}
        for part in trainable:
            if part == "query_tokens":
                model.query_tokens.data = model.query_tokens.data.float()
                model.query_tokens.requires_grad_(True)
            else:
                parts[part].float().requires_grad_(True)
        torch.cuda.reset_peak_memory_stats()
        settings = TrainSettings(lr=1e-4, schedule="constant", max_steps=args.steps, batch_size=args.batch,
                                 precision="bf16", log_every=1, seed=0)
        started = time.perf_counter()
        result = train(model, vlm.caption_loss, data, settings, collate_fn=collate, accelerator=accelerator)
        torch.cuda.synchronize()
        rows = [r for r in result.history if "samples_per_s" in r][2:]  # skip warm-up iterations
        results[phase] = {
            "samples_per_s": round(sum(r["samples_per_s"] for r in rows) / len(rows), 2),
            "step_s": round(args.batch / (sum(r["samples_per_s"] for r in rows) / len(rows)), 4),
            "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1024**3, 2),
            "wall_s": round(time.perf_counter() - started, 1),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "last_loss": rows[-1]["loss"],
        }
        print(json.dumps({phase: results[phase]}), flush=True)

    # Feature cache: the frozen VPG's outputs, computed once per image.
    started = time.perf_counter()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        cache = torch.cat([vlm.query_output(model, data.pixels[i:i + 64].to(device, torch.bfloat16))
                           for i in range(0, len(data), 64)]).float()
    torch.cuda.synchronize()
    results["feature_cache_build_s_per_image"] = round((time.perf_counter() - started) / len(data), 5)

    def collate_cached(idx):
        return {"query_output": cache[idx], "input_ids": data.ids[idx],
                "attention_mask": torch.ones_like(data.ids[idx]), "labels": data.labels[idx]}

    run("warmup_cached", ("projector",), collate_cached)
    run("warmup_uncached", ("projector",), collate_pixels)
    run("stage2", ("qformer", "query_tokens", "ln_vision", "projector"), collate_pixels)
    results["feature_cache_speedup"] = round(results["warmup_cached"]["samples_per_s"]
                                             / results["warmup_uncached"]["samples_per_s"], 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
