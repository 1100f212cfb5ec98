"""LaVIN-style MM-Adapters at real scale with random weights: inference cost of merging, and training.

Part 1, inference: a LLaMA-7B-shaped LM in bf16, timed on the same text batches
  (a) as the base model (no adapters),
  (b) with vltool's routed MM-Adapters (``attn`` placement, width 8; up-projections given small
      random values so the fold is not trivial), through MMAModel (modality token + 4D mask),
  (c) after ``merge_lm`` folded the adapters into q/k/v in place (LLaMA gains q/k/v/o biases).
  Teacher-forced forward passes, single KV-cached decoding steps, and whole greedy generations
  (``generate``, whose Python loop dominates at small batch), each variant timed in rounds
  alternating with the base; prints merged/base and unmerged/base. Exactness: merged vs unmerged
  logits in fp32, and how far bf16 alone moves the unmerged and the merged logits.
Part 2, training: LaVIN-7B (CLIP ViT-L/14 + LLaMA-7B, adapters in both, 6 visual tokens) through
  vltool's own training loop in bf16 (frozen weights bf16, trainables fp32): samples/s and peak memory.

    python bench/gpu_mma_real_scale.py [--batch 8] [--seq 256] [--new-tokens 32] [--tiny]

``--tiny`` runs the same code on a 2-layer model on the CPU (a smoke test; its times mean nothing).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from torch.utils.data import Dataset

from vltool.models.meta_count import text_config
from vltool.models.mma.build import build_clip_mma
from vltool.models.mma.inject import AdapterSettings, inject
from vltool.models.mma.lavin7b import clip_vit_l14_config, llama7b_config
from vltool.models.mma.layout import VISUAL
from vltool.models.mma.merge import merge_lm
from vltool.models.mma.mma_model import MMAModel, mma_loss
from vltool.training.loop import make_accelerator, train
from vltool.training.settings import TrainSettings


def configs(tiny: bool):
    lm, vision = llama7b_config(), clip_vit_l14_config()
    if tiny:
        lm = text_config({**lm.to_dict(), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512,
                          "model_type": "llama"})
        vision.update({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4,
                       "image_size": 28, "patch_size": 14})
    lm._attn_implementation = "sdpa"
    return lm, vision


def build_frozen(cls, config, device, dtype):
    """``cls(config)`` made directly on ``device`` in ``dtype`` (random init, no fp32 copy), frozen."""
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            module = cls(config)
    finally:
        torch.set_default_dtype(torch.float32)
    return module.eval().requires_grad_(False)


def build_lm(config, device, dtype):
    from transformers import LlamaForCausalLM

    return build_frozen(LlamaForCausalLM, config, device, dtype)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict, device, repeats: int) -> dict[str, float]:
    """Median seconds per callable, timed in alternating rounds (after two warm-up rounds) so clock
    and cache drift hit every variant alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 2):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if round_ >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def inference(args, device, dtype) -> dict:
    config, _ = configs(args.tiny)
    lm_base = build_lm(config, device, dtype)
    lm = copy.deepcopy(lm_base)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, config.vocab_size, (args.batch, args.seq), generator=g).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "modality": torch.zeros(args.batch, dtype=torch.long, device=device)}
    prompt = {k: v[:, : args.seq // 2] for k, v in batch.items() if k != "modality"} | {"modality": batch["modality"]}

    def forward(model, autocast: bool = True):
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=autocast and device.type == "cuda"):
            return model(batch).logits.float()

    def generate(model):
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            return model.generate_ids(prompt, args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=0,
                                      eos_token_id=None)

    def decode(model):
        """One KV-cached decoding step (batch x 1 new token after the prompt): generation's compute
        without ``generate``'s per-token Python overhead, which dominates small batches."""
        model.route(batch["modality"])  # LLM routing weights for this modality (a no-op once merged)
        length = prompt["input_ids"].shape[1]
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            cache = model.lm(input_ids=prompt["input_ids"], use_cache=True).past_key_values
        token = ids[:, length:length + 1]

        def step():
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
                model.lm(input_ids=token, past_key_values=cache, use_cache=True)
            cache.crop(-1)  # drop the step just added: every timed step sees the same cache

        return step

    base = MMAModel(lm_base).to(device)  # no adapters: the plain LM path
    inject(lm, "attn", AdapterSettings(dropout=0.0))
    model = MMAModel(lm).to(device).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # trained-looking adapters and router: the fold must really change the weights
        for name, p in model.named_parameters():
            if ".adapter." in name or name.startswith("modality"):
                p.add_(torch.randn_like(p) * 0.02)
    gen_repeats = max(3, args.repeats // 2)
    fwd = interleaved({"base": lambda: forward(base), "unmerged": lambda: forward(model)}, device, args.repeats)
    gen = interleaved({"base": lambda: generate(base), "unmerged": lambda: generate(model)}, device, gen_repeats)
    dec = interleaved({"base": decode(base), "unmerged": decode(model)}, device, args.repeats * 5)

    # Exactness: fold in fp32 and compare in fp32; then how far bf16 alone moves the logits.
    unmerged16 = forward(model)
    model.float()
    unmerged32 = forward(model, autocast=False)
    merged = merge_lm(model, "text")
    merged32 = forward(model, autocast=False)
    model.to(dtype)
    merged16 = forward(model)
    out: dict = {"merge": merged.message, "logit_scale": float(unmerged32.abs().max()),
                 "max_logit_diff_fp32_merged_vs_unmerged": float((merged32 - unmerged32).abs().max()),
                 "max_logit_diff_bf16_unmerged_vs_fp32": float((unmerged16 - unmerged32).abs().max()),
                 "max_logit_diff_bf16_merged_vs_fp32": float((merged16 - unmerged32).abs().max())}
    fwd2 = interleaved({"base": lambda: forward(base), "merged": lambda: forward(model)}, device, args.repeats)
    fwd["base_2"], fwd["merged"] = fwd2["base"], fwd2["merged"]
    gen2 = interleaved({"base": lambda: generate(base), "merged": lambda: generate(model)}, device, gen_repeats)
    gen["base_2"], gen["merged"] = gen2["base"], gen2["merged"]
    dec2 = interleaved({"base": decode(base), "merged": decode(model)}, device, args.repeats * 5)
    dec["base_2"], dec["merged"] = dec2["base"], dec2["merged"]
    out["decode_step_ms"] = {k: round(v * 1000, 3) for k, v in dec.items()}
    out["decode_step_ratio"] = {"merged/base": round(dec["merged"] / dec["base_2"], 4),
                                "unmerged/base": round(dec["unmerged"] / dec["base"], 4)}
    out["forward_ms"] = {k: round(v * 1000, 2) for k, v in fwd.items()}
    out["generate_ms"] = {k: round(v * 1000, 2) for k, v in gen.items()}
    out["forward_ratio"] = {"merged/base": round(fwd["merged"] / fwd["base_2"], 4),
                            "unmerged/base": round(fwd["unmerged"] / fwd["base"], 4)}
    out["generate_ratio"] = {"merged/base": round(gen["merged"] / gen["base_2"], 4),
                             "unmerged/base": round(gen["unmerged"] / gen["base"], 4)}
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


class Synthetic(Dataset):
    """Random images and LaVIN-layout token rows: BOS, visual slots, prompt, answer (labelled)."""

    def __init__(self, n: int, tokens: int, seq: int, vocab: int, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.pixels = torch.randn(n, 3, size, size, generator=g)
        text = torch.randint(3, vocab, (n, seq), generator=g)
        self.ids = torch.cat([torch.ones(n, 1, dtype=torch.long), torch.full((n, tokens), VISUAL), text], 1)
        self.labels = torch.full_like(self.ids, -100)
        self.labels[:, -seq // 4:] = self.ids[:, -seq // 4:]  # the answer: the last quarter

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> int:
        return i


def training(args, device, dtype) -> dict:
    from transformers import CLIPVisionModel

    config, vision_config = configs(args.tiny)
    lm = build_lm(config, device, dtype)
    vision = build_frozen(CLIPVisionModel, vision_config, device, dtype)
    model = build_clip_mma(lm, vision, AdapterSettings(), "attn", visual_tokens=6, vision_adapters=True)
    for name, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()  # fp32 trainables (the optimizer's master weights)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    data = Synthetic(args.batch * (args.steps + 2), 6, args.seq, config.vocab_size, vision_config.image_size)

    def collate(idx):
        return {"input_ids": data.ids[idx], "attention_mask": torch.ones_like(data.ids[idx]),
                "modality": torch.ones(len(idx), dtype=torch.long), "pixel_values": data.pixels[idx].to(dtype),
                "labels": data.labels[idx]}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    settings = TrainSettings(lr=9e-3 * args.batch / 256, schedule="constant", max_steps=args.steps,
                             batch_size=args.batch, precision="bf16" if device.type == "cuda" else "no",
                             log_every=1, seed=0, weight_decay=0.02, betas=(0.9, 0.95))
    result = train(model, mma_loss, data, settings, collate_fn=collate,
                   accelerator=make_accelerator(settings.precision))
    sync(device)
    rows = [r for r in result.history if "samples_per_s" in r][2:] or [r for r in result.history
                                                                       if "samples_per_s" in r]
    speed = sum(r["samples_per_s"] for r in rows) / len(rows)
    return {"trainable": trainable, "total": sum(p.numel() for p in model.parameters()),
            "batch": args.batch, "text_tokens": args.seq, "samples_per_s": round(speed, 2),
            "step_s": round(args.batch / speed, 4), "last_loss": rows[-1]["loss"],
            "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1024**3, 2) if device.type == "cuda" else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--tiny", action="store_true", help="a 2-layer CPU smoke run; times mean nothing")
    ap.add_argument("--skip-training", action="store_true")
    args = ap.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    results: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                     "dtype": str(dtype), "batch": args.batch, "seq": args.seq, "new_tokens": args.new_tokens}
    results["inference"] = inference(args, device, dtype)
    print(json.dumps({"inference": results["inference"]}), flush=True)
    if not args.skip_training:
        results["training_lavin7b"] = training(args, device, dtype)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
