"""Real-scale training throughput and model FLOP utilisation (MFU), random weights, one lever at a time.

Phases (``--phases``), each through vltool's own training loop:
  warmup_cached  VPGTrans warm-up from cached Q-Former outputs (the feature cache),
  warmup         VPGTrans warm-up recomputing the frozen ViT + Q-Former,
  stage2         VPGTrans stage 2 (Q-Former + queries + ln_vision + projector train),
  mma            tune-mma on LaVIN-7B (CLIP ViT-L/14 + LLaMA-7B, MM-Adapters in both, 6 visual tokens).
BLIP-2's VPG (EVA ViT-g/14 + Q-Former) sits in front of ``--target`` (llama-7b / opt-6.7b).

Captions have realistic lengths: drawn from a COCO-like distribution (median ~12 tokens, 6-30),
batched by length (``--bucket``: each micro-batch takes neighbours in length order, so padding to
the batch's longest wastes little) or not (``--no-bucket``), padded to the longest in the batch.
FLOPs per micro-batch come from ``vltool.models.flops`` on the padded shape (tested against
torch's FLOP counter); MFU = FLOPs per second / the device's peak dense bf16 FLOP/s
(``flops.PEAK_BF16_TFLOPS``). Prints one JSON line per (phase, micro-batch) and a summary.

Each row also carries ``--dry-run``'s memory estimate for that exact shape (``estimate_gb``:
frozen weights as the loop stores them + 16 bytes per trainable + activations at the run's
longest padded batch, by the functions ``vltool/models/meta_count.py`` and
``vltool/models/mma/count.py`` use) beside the measured ``torch.cuda.max_memory_allocated``
(``peak_mem_gb``), and ``estimate_error`` = estimate / peak - 1 (the goal: within 10%).
Models are built in fp32 and cast the way the training loop casts them (``train.frozen_dtype``).

Levers (measure them one by one against the defaults):
  --attn sdpa|eager        attention kernels of ViT, Q-Former and LLM (default sdpa)
  --frozen-dtype auto|fp32 train.frozen_dtype: frozen LLM/ViT weight matrices in bf16 (auto, the default) or fp32
  --compile-frozen         torch.compile the frozen LLM's decoder layers and the frozen ViT's layers
  --fused-adamw            AdamW(fused=True) (CUDA)
  --grad-ckpt              train.gradient_checkpointing (LLM, and the adapted ViT in mma)
  --batches 8,16,32        micro-batch sizes to sweep (effective batch = micro x --accum)
  --accum N                micro-batches per optimizer step (Accelerate's accumulate())

    python bench/gpu_real_scale.py [--target llama-7b] [--phases stage2,mma] [--batches 16,32] [--steps 10]
    python bench/gpu_real_scale.py --tiny    # the same code on tiny models on the CPU (times mean nothing)
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch.utils.data import Dataset

from vltool.models import flops as F
from vltool.models import vlm
from vltool.models.lm_loss import labelled_count
from vltool.models.memory import FROZEN_DTYPE_NAMES, cast_frozen_towers, frozen_dtype_name
from vltool.models.meta_count import GIB, activation_gb, arch, frozen_weight_bytes, meta_blip2
from vltool.models.mma.count import activation_gb as mma_activation_gb
from vltool.training import loop as loop_module
from vltool.training.loop import make_accelerator, train
from vltool.training.settings import TrainSettings

TINY_SOURCE = {"vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "image_size": 28, "patch_size": 14},
               "qformer": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                           "cross_attention_frequency": 2, "encoder_hidden_size": 32, "max_position_embeddings": 64},
               "num_query_tokens": 4}
TINY_TEXT = {"model_type": "llama", "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 4, "intermediate_size": 96, "vocab_size": 512, "rms_norm_eps": 1e-6,
             "max_position_embeddings": 256}


def caption_lengths(n: int, seed: int = 0, low: int = 6, high: int = 30) -> torch.Tensor:
    """COCO-like caption lengths in LLM tokens (BOS + words + end): log-normal, median ~12, clipped."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.exp(torch.randn(n, generator=g) * 0.3 + math.log(12))
    return raw.round().clamp(low, high).long()


class Captions(Dataset):
    """Random images and caption token rows of varying length (item i = index i; collate pads)."""

    decodes_images = False

    def __init__(self, n: int, lengths: torch.Tensor, vocab: int, image_size: int, bucket: bool) -> None:
        g = torch.Generator().manual_seed(1)
        self.lengths = lengths
        self.pixels = torch.randn(min(n, 64), 3, image_size, image_size, generator=g)  # reused: memory stays small
        self.tokens = torch.randint(3, vocab - 2, (n, int(lengths.max())), generator=g)
        self.bucket = bucket

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> int:
        return i

    def batch_sampler(self, micro, accum, world, rank, seed, total, start_step):
        """Length-bucketed micro-batches: neighbours in length order (shuffled bucket order), or random."""
        g = torch.Generator().manual_seed(seed)
        order = torch.argsort(self.lengths, stable=True) if self.bucket else torch.randperm(len(self), generator=g)
        chunks = [order[i:i + micro].tolist() for i in range(0, len(order) - micro + 1, micro)]
        pick = torch.randperm(len(chunks), generator=g).tolist()
        needed = (total - start_step) * accum * world
        out = [chunks[pick[k % len(pick)]] for k in range(start_step * accum * world, start_step * accum * world + needed)]
        return out[rank::world]


def vpg_collate(data: Captions, q: int, image_token: int, pad: int, dtype, counter: dict, config, stage: str,
                cache: torch.Tensor | None = None):
    def collate(idx):
        longest = int(data.lengths[idx].max())
        n = len(idx)
        text = torch.full((n, longest), pad)
        mask = torch.zeros(n, longest, dtype=torch.long)
        for row, i in enumerate(idx):
            length = int(data.lengths[i])
            text[row, :length] = data.tokens[i, :length]
            mask[row, :length] = 1
        ids = torch.cat([torch.full((n, q), image_token), text], 1)
        labels = torch.cat([torch.full((n, q), -100), text.masked_fill(mask == 0, -100)], 1)
        batch = {"input_ids": ids, "attention_mask": torch.cat([torch.ones(n, q, dtype=torch.long), mask], 1),
                 "labels": labels}
        if cache is not None:
            batch["query_output"] = cache[torch.tensor(idx) % len(cache)]
        else:
            batch["pixel_values"] = data.pixels[torch.tensor(idx) % len(data.pixels)].to(dtype)
        counter["flops"].append(F.vpgtrans_flops(config, stage, n, longest, labelled=labelled_count(labels)).total)
        counter["tokens"].append((int(mask.sum()), n * longest))
        counter["longest"].append(longest)
        return batch

    return collate


def samples_needed(args) -> int:
    """One data set size for every run of a session (8192 rows unless a run needs more), so runs at
    the same micro-batch draw the same length-bucketed batches and their speeds compare."""
    return max(8192, max(args.batches) * args.accum * (args.steps + 2))


def random_init_(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        with torch.no_grad():
            if p.ndim == 1:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.normal_(0.0, 0.02)


def compile_layers(module: torch.nn.Module) -> None:
    """torch.compile each transformer layer of a frozen sub-model (its ModuleList entries)."""
    for child in module.modules():
        if isinstance(child, torch.nn.ModuleList):
            for i, layer in enumerate(child):
                child[i] = torch.compile(layer)
            return


def use_fused_adamw(on: bool) -> None:
    original = loop_module.build_optimizer

    def build(model, settings):
        opt = original(model, settings)
        if not on:
            return opt
        return torch.optim.AdamW(opt.param_groups, lr=settings.lr, betas=tuple(settings.betas), fused=True)

    loop_module.build_optimizer = build


def frozen_setting(args, device) -> str:
    """The bench's train.frozen_dtype: the lever on the GPU; on the CPU (fp32, no autocast) auto."""
    return args.frozen_dtype if device.type == "cuda" else "auto"


def frozen_name(args, device) -> str:
    """The dtype name the training loop stores the frozen towers in for this run (bf16 / fp32)."""
    return frozen_dtype_name(frozen_setting(args, device), "bf16" if device.type == "cuda" else "no")


def store_frozen(model, args, device) -> None:
    """Cast the frozen towers as the training loop will (before timing, so the peak is training's)."""
    cast_frozen_towers(model, getattr(torch, FROZEN_DTYPE_NAMES[frozen_name(args, device)]))


def states_gb(model, frozen: str) -> float:
    """The dry-run's weights + trainable-state term: frozen tensors as stored, 16 bytes a trainable."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return (frozen_weight_bytes(model, frozen) + 16 * trainable) / GIB


def timed_run(model, loss_fn, data, collate, args, micro, counter, accelerator, device, estimate=None):
    """Train ``args.steps`` steps through vltool's loop; samples/s, MFU, peak memory and the dry-run estimate."""
    for values in counter.values():
        values.clear()
    for param in model.parameters():  # gradients left by a run that ran out of memory
        param.grad = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    settings = TrainSettings(lr=1e-4, schedule="constant", max_steps=args.steps, batch_size=micro * args.accum,
                             micro_batch_size=micro, precision="bf16" if device.type == "cuda" else "no",
                             log_every=1, seed=0, num_workers=0, gradient_checkpointing=args.grad_ckpt,
                             frozen_dtype=frozen_setting(args, device))
    started = time.perf_counter()
    result = train(model, loss_fn, data, settings, collate_fn=collate, accelerator=accelerator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    rows = [r for r in result.history if "samples_per_s" in r]
    if not rows:
        return {"error": f"no step logged ({result.stopped})"}
    skip = min(2, len(rows) - 1)  # warm-up / compile iterations
    rows = rows[skip:]
    speed = sum(r["samples_per_s"] for r in rows) / len(rows)
    per_step = args.accum
    flops = counter["flops"][skip * per_step:]
    per_sample = sum(flops) / (len(flops) * micro)
    real, padded = map(sum, zip(*counter["tokens"], strict=True))
    peak = F.peak_tflops(torch.cuda.get_device_name()) if device.type == "cuda" else None
    measured = torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else None
    estimated = estimate(micro, max(counter["longest"]), counter) if estimate else None
    return {"micro_batch": micro, "accum": args.accum, "samples_per_s": round(speed, 2),
            "flops_per_sample": f"{per_sample:.4g}", "tflops_per_s": round(speed * per_sample / 1e12, 4),
            "mfu": round(speed * per_sample / (peak * 1e12), 4) if peak else None,
            "text_padding_share": round(1 - real / padded, 3),
            "peak_mem_gb": round(measured, 2) if measured else None,
            "estimate_gb": float(f"{estimated:.4g}") if estimated is not None else None,
            "estimate_error": round(estimated / measured - 1, 3) if measured and estimated is not None else None,
            "wall_s": round(time.perf_counter() - started, 1), "last_loss": round(rows[-1]["loss"], 4)}


def vpgtrans_phases(args, device, dtype, accelerator, results):
    if args.tiny:
        source, target = TINY_SOURCE, TINY_TEXT
    else:
        source, target = arch(args.source), arch(args.target)["text"]
    model = meta_blip2(source, target)
    image_token = target["vocab_size"] - 1
    model.config.image_token_index = image_token
    for sub in (model, model.vision_model, model.qformer, model.language_model):
        sub.config._attn_implementation = args.attn
    model.to_empty(device=device)
    random_init_(model)
    vlm.set_trainable(model, vlm.WARMUP_PARTS)
    store_frozen(model, args, device)
    if args.compile_frozen:
        compile_layers(model.language_model)
        compile_layers(model.vision_model)
    q = model.config.num_query_tokens
    size = model.config.vision_config.image_size
    n = samples_needed(args)
    data = Captions(n, caption_lengths(n), target["vocab_size"], size, args.bucket)
    counter: dict = {"flops": [], "tokens": [], "longest": []}
    precision = "bf16" if device.type == "cuda" else "no"
    cache = None
    if "warmup_cached" in args.phases:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            cache = torch.cat([vlm.query_output(model, data.pixels[i:i + 32].to(device, dtype))
                               for i in range(0, len(data.pixels), 32)]).float()
    for phase in [p for p in args.phases if p in F.VPGTRANS_STAGES]:
        parts = vlm.STAGE2_PARTS if phase == "stage2" else vlm.WARMUP_PARTS
        for micro in args.batches:
            vlm.set_trainable(model, parts)
            for name, p in model.named_parameters():
                if p.requires_grad:
                    p.data = p.data.float()  # fp32 master weights of what trains
            collate = vpg_collate(data, q, image_token, 0, dtype, counter, model.config, phase,
                                  cache if phase == "warmup_cached" else None)
            stage = "transfer" if phase == "stage2" else "warm-up"
            def estimate(m, longest, _, stage=stage):
                return states_gb(model, frozen_name(args, device)) + activation_gb(
                    model, stage, m, longest, precision, args.grad_ckpt)

            row = {"phase": phase, **_try(lambda c=collate, m=micro, e=estimate: timed_run(
                model, vlm.caption_loss, data, c, args, m, counter, accelerator, device, e))}
            results.append(row)
            print(json.dumps(row), flush=True)


def _try(fn):
    try:
        return fn()
    except torch.OutOfMemoryError:
        return {"error": "out of memory"}


def mma_phase(args, device, dtype, accelerator, results):
    import gpu_mma_real_scale as mma_bench
    from transformers import CLIPVisionModel

    from vltool.models.mma.build import build_clip_mma
    from vltool.models.mma.inject import AdapterSettings
    from vltool.models.mma.layout import VISUAL
    from vltool.models.mma.mma_model import mma_loss

    config, vision_config = mma_bench.configs(args.tiny)
    config._attn_implementation = args.attn
    vision_config._attn_implementation = args.attn
    lm = mma_bench.build_lm(config, device, torch.float32)
    vision = mma_bench.build_frozen(CLIPVisionModel, vision_config, device, torch.float32)
    if args.compile_frozen:
        compile_layers(lm)
        compile_layers(vision)
    adapter = AdapterSettings()
    model = build_clip_mma(lm, vision, adapter, "attn", visual_tokens=6 if not args.tiny else 2, vision_adapters=True)
    store_frozen(model, args, device)
    visual = 6 if not args.tiny else 2
    n = samples_needed(args)
    # ScienceQA-like rows: prompt (context + question + options) + answer with explanation, ~100-400 tokens.
    g = torch.Generator().manual_seed(2)
    lengths = (torch.exp(torch.randn(n, generator=g) * 0.35 + math.log(180))).round().clamp(64, args.mma_max_len).long()
    if args.tiny:
        lengths = (lengths // 16).clamp(min=8)
    data = Captions(n, lengths, config.vocab_size, vision_config.image_size, args.bucket)
    counter: dict = {"flops": [], "tokens": [], "longest": [], "answer": []}
    precision = "bf16" if device.type == "cuda" else "no"
    spec = {"bottleneck": adapter.bottleneck, "groups": adapter.groups, "router": adapter.router}

    def collate(idx):
        longest = int(data.lengths[idx].max()) + 2 + visual
        rows = len(idx)
        ids = torch.zeros(rows, longest, dtype=torch.long)
        mask = torch.zeros(rows, longest, dtype=torch.long)
        labels = torch.full((rows, longest), -100)
        for r, i in enumerate(idx):
            length = int(data.lengths[i])
            row = torch.cat([torch.tensor([1]), torch.full((visual,), VISUAL), data.tokens[i, :length]])
            ids[r, :len(row)] = row
            mask[r, :len(row)] = 1
            labels[r, len(row) - length // 4:len(row)] = row[len(row) - length // 4:]
        # The modality token precedes the text, so every labelled slot is one LM-head row.
        counter["flops"].append(F.mma_flops(config, vision_config, spec, "attn", rows, longest, rows,
                                            visual_tokens=visual, labelled=int((labels != -100).sum())).total)
        counter["tokens"].append((int(mask.sum()), rows * longest))
        counter["longest"].append(longest)
        counter["answer"].append(int((labels != -100).sum(1).max()))
        return {"input_ids": ids, "attention_mask": mask, "modality": torch.ones(rows, dtype=torch.long),
                "pixel_values": data.pixels[torch.tensor(idx) % len(data.pixels)].to(dtype), "labels": labels}

    def estimate(micro, longest, counts):
        # The LLM runs the modality token + the padded text; logits for the longest answer per row.
        return states_gb(model, frozen_name(args, device)) + mma_activation_gb(
            model, micro, longest + 1, precision, args.grad_ckpt, answer_tokens=max(counts["answer"]))

    for micro in args.batches:
        row = {"phase": "mma", **_try(lambda micro=micro: timed_run(model, mma_loss, data, collate, args, micro, counter,
                                                                    accelerator, device, estimate))}
        results.append(row)
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="blip2-opt-2.7b")
    ap.add_argument("--target", default="llama-7b")
    ap.add_argument("--phases", default="warmup_cached,warmup,stage2,mma")
    ap.add_argument("--batches", default="16,32")
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--frozen-dtype", choices=["auto", "fp32"], default="auto")
    ap.add_argument("--compile-frozen", action="store_true")
    ap.add_argument("--fused-adamw", action="store_true")
    ap.add_argument("--grad-ckpt", action="store_true")
    ap.add_argument("--bucket", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--mma-max-len", type=int, default=400)
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU: a smoke run, times mean nothing")
    args = ap.parse_args()
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    args.batches = [int(b) for b in args.batches.split(",")]
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    use_fused_adamw(args.fused_adamw and device.type == "cuda")
    accelerator = make_accelerator("bf16" if device.type == "cuda" else "no", cpu=device.type == "cpu")
    header = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "peak_bf16_tflops": F.peak_tflops(torch.cuda.get_device_name()) if device.type == "cuda" else None,
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
              "levers": {k: getattr(args, k) for k in ("attn", "frozen_dtype", "compile_frozen", "fused_adamw", "grad_ckpt",
                                                       "bucket", "accum")},
              "source": "tiny" if args.tiny else args.source, "target": "tiny" if args.tiny else args.target}
    print(json.dumps(header), flush=True)
    results: list[dict] = []
    if any(p in F.VPGTRANS_STAGES for p in args.phases):
        vpgtrans_phases(args, device, dtype, accelerator, results)
    if "mma" in args.phases:
        mma_phase(args, device, dtype, accelerator, results)
    print(json.dumps({"summary": header | {"results": results}}, indent=1))


if __name__ == "__main__":
    main()
