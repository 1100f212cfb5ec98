"""VPGTrans speed-up on the demo world, for both targets, measured in one run.

For each target (demo-opt-l: same tokenizer; demo-llama: different tokenizer) it trains the
transferred VPG (warm-up + fine-tune) and a from-scratch VPG with the same recipe, then prints
from-scratch steps to its best validation quality / transfer steps to reach it (the paper's
definition; warm-up steps are counted for the transfer arm), on the captioning val loss and on
caption attribute accuracy.

    python bench/vpgtrans_speedup.py [--out bench-out] [--scratch-steps 600] [--seeds 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _cli import vltool

from vltool.eval.curves import read_curve, speedup

TARGETS = {"demo-opt-l": "demo/transfer-opt-s-to-opt-l", "demo-llama": "demo/transfer-opt-s-to-llama"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-out/speedup")
    ap.add_argument("--scratch-steps", type=int, default=600)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    out = Path(args.out)
    vltool("zoo", "build")
    rows = []
    for seed in args.seeds:
        for target, recipe in TARGETS.items():
            t, s = out / f"{target}-s{seed}-transfer", out / f"{target}-s{seed}-scratch"
            vltool("transfer", "-r", recipe, "--out", str(t), "--force", f"train.seed={seed}")
            vltool("transfer", "-r", recipe, "--from-scratch", "--out", str(s), "--force", f"train.seed={seed}",
                   f"train.max_steps={args.scratch_steps}")
            for metric, higher in (("val_loss", False), ("attr_acc", True)):
                r = speedup(read_curve(s / "metrics.jsonl", metric), read_curve(t / "metrics.jsonl", metric),
                            metric, higher)
                rows.append((seed, target, metric, r))
    print(f"\n{'seed':>4} {'target':<11} {'metric':<9} {'best scratch':>12} {'scratch steps':>13} "
          f"{'transfer steps':>14} {'speed-up':>8}")
    for seed, target, metric, r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio else "never"
        print(f"{seed:>4} {target:<11} {metric:<9} {r.best_scratch:>12.4g} {r.steps_scratch:>13} "
              f"{r.steps_transfer!s:>14} {ratio:>8}")


if __name__ == "__main__":
    main()
