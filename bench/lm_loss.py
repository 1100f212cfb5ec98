"""The caption loss before and after ``lm_loss`` (the LM head on the labelled positions only), on CPU.

One forward + backward of ``vlm.caption_loss`` (new: ``[n_labelled, vocab]`` logits) against
``vlm.forward(...).loss`` (old: ``[B, T, vocab]`` logits) on a mid-size random LLaMA behind a tiny
BLIP-2 VPG, from cached Q-Former outputs (the warm-up: only the projector trains, the gradient
flows back through the whole frozen LLM). Each variant runs in a fresh subprocess, so its peak RSS
(``ru_maxrss``) after one step minus before it is that step's peak extra memory; then the median
wall time of ``--steps`` more steps. Also prints the logits' size by formula, and the two losses.

    python bench/lm_loss.py [--hidden 1024 --layers 4 --vocab 32000 --batch 16 --queries 32 --text 16]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime

import torch
from torch import nn


def build(args):
    from transformers import (
        Blip2QFormerConfig,
        Blip2QFormerModel,
        Blip2VisionConfig,
        Blip2VisionModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from vltool.models import vlm

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                                      num_attention_heads=args.hidden // 64, intermediate_size=args.hidden * 8 // 3,
                                      max_position_embeddings=256, attn_implementation="sdpa"))
    vision = Blip2VisionModel(Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                num_attention_heads=2, image_size=28, patch_size=14))
    qformer = Blip2QFormerModel(Blip2QFormerConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                                   intermediate_size=128, encoder_hidden_size=32))
    model = vlm.assemble(vision, qformer, torch.randn(1, args.queries, 64) * 0.02, nn.Linear(64, args.hidden), lm,
                         image_token_index=args.vocab - 1)
    vlm.set_trainable(model, vlm.WARMUP_PARTS)
    model.train()
    # Right-padded text: BOS + a caption of 7..text-1 tokens (COCO-like, varying), labels on the caption.
    g = torch.Generator().manual_seed(1)
    b, q, t = args.batch, args.queries, args.text
    lengths = torch.randint(8, t + 1, (b,), generator=g)
    text = torch.zeros(b, t, dtype=torch.long)
    labels = torch.full((b, t), -100)
    for row, n in enumerate(lengths.tolist()):
        text[row, :n] = torch.randint(3, args.vocab - 2, (n,), generator=g)
        text[row, 0] = 1
        labels[row, 1:n] = text[row, 1:n]
    mask = (torch.arange(t) < lengths[:, None]).long()
    batch = {"input_ids": torch.cat([torch.full((b, q), args.vocab - 1), text], 1),
             "attention_mask": torch.cat([torch.ones(b, q, dtype=torch.long), mask], 1),
             "labels": torch.cat([torch.full((b, q), -100), labels], 1),
             "query_output": torch.randn(b, q, 64, generator=g)}
    return model, batch


def step(model, batch, variant: str) -> float:
    from vltool.models import vlm

    model.zero_grad(set_to_none=True)
    loss = vlm.forward(model, batch).loss if variant == "old" else vlm.caption_loss(model, batch)
    loss.backward()
    return float(loss)


def child(args) -> None:
    torch.set_num_threads(args.threads)
    model, batch = build(args)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss = step(model, batch, args.child)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step(model, batch, args.child)
        times.append(time.perf_counter() - start)
    from vltool.models.lm_loss import labelled_count

    print(json.dumps({"peak_extra_mb": (peak - before) / 1024, "loss": loss, "step_s": statistics.median(times),
                      "labelled": labelled_count(batch["labels"]), "shape": list(batch["labels"].shape)}))


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:  # noqa: BLE001  (no lscpu: say what Python knows)
        return platform.processor() or platform.machine()


def model_arguments(ap: argparse.ArgumentParser, variants: tuple[str, ...], steps: int) -> None:
    """The model / batch options (also bench/frozen_dtype.py's) and the hidden per-variant child flag."""
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--queries", type=int, default=32)
    ap.add_argument("--text", type=int, default=16, help="text slots after the queries: BOS + caption, padded")
    ap.add_argument("--steps", type=int, default=steps, help="timed steps per variant (median)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=variants, help=argparse.SUPPRESS)


def print_header(script: str, args: argparse.Namespace, note: str, precision: str) -> None:
    """The command, date, CPU and model of a run, as comment lines above its results."""
    print(f"# python bench/{script} {' '.join(sys.argv[1:])}".rstrip())
    print(f"# {datetime.now().strftime('%Y-%m-%d %H:%M')}, CPU: {cpu_name()}, {torch.get_num_threads()} threads "
          f"available, {args.threads} used; torch {torch.__version__}{note}")
    print(f"# random LLaMA: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}; batch {args.batch} x "
          f"({args.queries} queries + {args.text} text slots); cached warm-up (projector trains), {precision}")


def run_variants(script: str, variants: tuple[str, ...]) -> dict[str, dict]:
    """Each variant in a fresh subprocess of ``script`` (so its peak memory is its own); their JSON rows."""
    argv = list(sys.argv[1:])
    rows = {}
    for variant in variants:
        out = subprocess.run([sys.executable, script, *argv, "--child", variant], capture_output=True, text=True,
                             check=True)
        rows[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    model_arguments(ap, ("old", "new"), steps=5)
    args = ap.parse_args()
    if args.child:
        return child(args)
    print_header("lm_loss.py", args, "", "fp32")
    rows = run_variants(__file__, ("old", "new"))
    old, new = rows["old"], rows["new"]
    b, t = old["shape"]
    n = new["labelled"]
    logits_old, logits_new = b * t * args.vocab * 4, n * args.vocab * 4
    print(f"logits (fp32, by formula): old [{b}, {t}, {args.vocab}] = {logits_old / 2**20:.1f} MiB, "
          f"new [{n}, {args.vocab}] = {logits_new / 2**20:.1f} MiB, ratio {logits_old / logits_new:.2f}x")
    for name, row in (("old: forward(...).loss ", old), ("new: caption_loss      ", new)):
        print(f"{name} loss {row['loss']:.6f}  peak extra RSS of one fwd+bwd {row['peak_extra_mb']:7.1f} MB  "
              f"step {row['step_s'] * 1000:7.1f} ms (median of {args.steps})")
    print(f"ratio old/new: peak extra memory {old['peak_extra_mb'] / new['peak_extra_mb']:.2f}x, "
          f"step time {old['step_s'] / new['step_s']:.2f}x; |loss difference| {abs(old['loss'] - new['loss']):.2e}")


if __name__ == "__main__":
    main()
