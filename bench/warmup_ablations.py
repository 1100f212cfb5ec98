"""Warm-up on the demo world: feature cache vs none (step time), converter init vs random (quality).

Runs ``vltool warmup`` three times on the same data (1 epoch, demo-blip2-opt-s -> demo-llama):
with the feature cache and the word-converter projector init; without the feature cache; and
without the converter (random projector). Prints the per-step time ratio of the first two and the
validation caption quality after the 1-epoch warm-up of the first and the third.

    python bench/warmup_ablations.py [--out bench-out/warmup]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _cli import manifest, vltool

RECIPE = "demo/transfer-opt-s-to-llama"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-out/warmup")
    args = ap.parse_args()
    out = Path(args.out)
    vltool("zoo", "build")
    runs = {"cache+converter": [], "no cache": ["--no-feature-cache"], "no converter": ["--no-converter"]}
    metrics = {}
    for name, flags in runs.items():
        path = out / name.replace(" ", "-").replace("+", "-")
        vltool("warmup", "-r", RECIPE, "--out", str(path), "--force", *flags)
        metrics[name] = manifest(path)["metrics"]
    cached, uncached = metrics["cache+converter"], metrics["no cache"]
    print(f"\nwarm-up step time: cached {cached['warmup_step_s'] * 1000:.1f} ms, "
          f"uncached {uncached['warmup_step_s'] * 1000:.1f} ms -> "
          f"feature cache speed-up {uncached['warmup_step_s'] / cached['warmup_step_s']:.2f}x "
          f"(cache built once in {cached['feature_cache_s']:.1f} s)")
    for key in ("final_val_loss", "final_attr_acc", "final_scene_acc"):
        print(f"after 1-epoch warm-up, {key}: converter init {metrics['cache+converter'][key]:.4g} "
              f"vs random projector {metrics['no converter'][key]:.4g}")


if __name__ == "__main__":
    main()
