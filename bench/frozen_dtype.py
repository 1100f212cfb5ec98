"""``train.frozen_dtype``: frozen towers stored in fp32 vs bf16 under bf16 autocast, on CPU.

The same model and batch as ``bench/lm_loss.py`` (a mid-size random LLaMA behind a tiny BLIP-2
VPG, cached warm-up: the gradient flows back through the whole frozen LLM). Each variant runs in
a fresh subprocess under ``torch.autocast("cpu", bfloat16)``, the way the training loop runs a
bf16 step: ``fp32`` keeps the frozen weights as vltool did before, ``bf16`` stores the frozen
LLM / ViT matrices in bf16 (``models.memory.cast_frozen_towers``, what the loop does). Printed:
the process's resident memory before the step and its peak during one forward + backward
(Linux ``VmHWM``, reset just before the step), the frozen weights' bytes, and the median step
time. This CPU has no bf16 matrix units, so the times say nothing about a GPU; the memory does:
with fp32 weights, autocast makes a bf16 copy of every frozen matrix in the forward and keeps
it for the backward's input gradient, on top of the fp32 weights.

    python bench/frozen_dtype.py [--hidden 1024 --layers 4 --vocab 32000 --batch 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from lm_loss import build, model_arguments, print_header, run_variants  # the same model and batch


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def step(model, batch) -> float:
    from vltool.models import vlm

    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = vlm.caption_loss(model, batch)
    loss.backward()
    return float(loss)


def child(args) -> None:
    from vltool.models.memory import cast_frozen_towers, frozen_tower_parameters

    torch.set_num_threads(args.threads)
    model, batch = build(args)
    if args.child == "bf16":
        cast_frozen_towers(model, torch.bfloat16)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    towers = len(frozen_tower_parameters(model))
    before = rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    loss = step(model, batch)
    peak = rss_mb("VmHWM")
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step(model, batch)
        times.append(time.perf_counter() - start)
    print(json.dumps({"before_mb": before, "peak_mb": peak, "frozen_mb": frozen / 2**20, "towers": towers,
                      "loss": loss, "step_s": statistics.median(times)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    model_arguments(ap, ("fp32", "bf16"), steps=3)
    args = ap.parse_args()
    if args.child:
        return child(args)
    print_header("frozen_dtype.py", args, "; no bf16 matrix units: times are not a GPU's", "bf16 autocast")
    rows = run_variants(__file__, ("fp32", "bf16"))
    for name, row in rows.items():
        print(f"frozen towers {name}: frozen weights {row['frozen_mb']:7.1f} MiB  RSS before the step "
              f"{row['before_mb']:7.1f} MiB  peak during one fwd+bwd {row['peak_mb']:7.1f} MiB "
              f"(+{row['peak_mb'] - row['before_mb']:.1f})  loss {row['loss']:.4f}  step {row['step_s'] * 1000:.0f} ms")
    a, b = rows["fp32"], rows["bf16"]
    print(f"ratio fp32/bf16: frozen weights {a['frozen_mb'] / b['frozen_mb']:.2f}x, peak RSS {a['peak_mb'] / b['peak_mb']:.2f}x, "
          f"step growth over the resident size {(a['peak_mb'] - a['before_mb']) / (b['peak_mb'] - b['before_mb']):.2f}x, "
          f"step time {a['step_s'] / b['step_s']:.2f}x; |loss difference| {abs(a['loss'] - b['loss']):.2e}")


if __name__ == "__main__":
    main()
