"""Inference time of a merged MMA model vs the base model vs the unmerged adapters (demo world).

Times teacher-forced forward passes over the same batches of ScienceQA-style prompts for:
the base model (the transferred VPG + LLM, no adapters), the model with MM-Adapters (routing pass
+ adapters), and the merged model (adapters folded into q/k/v and the FFN input). Prints the
ratios merged/base (goal <= 1.02) and unmerged/base, from one run, best of several repeats.

    python bench/mma_inference.py ADAPTERS_ARTIFACT MERGED_FOLDER [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from vltool.artifacts import read_artifact
from vltool.data.device_pixels import normalise_batch, scale_of
from vltool.data.specs import load_spec
from vltool.eval.predictors import load_predictor
from vltool.models.mma.loading import load_base
from vltool.models.mma.mma_model import MMAModel
from vltool.models.mma.qformer_frontend import QFormerFrontEnd


def timed(model: MMAModel, batches, repeats: int) -> float:
    best = float("inf")
    with torch.no_grad():
        model(batches[0])
        for _ in range(repeats):
            start = time.perf_counter()
            for batch in batches:
                model(batch)
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("adapters")
    ap.add_argument("merged")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    unmerged = load_predictor(args.adapters)
    merged = load_predictor(args.merged)
    samples = [s for s in load_spec("demo:sqa", "val") if s.image is not None][: 16 * args.batches]
    batches = []
    for i in range(0, len(samples), 16):
        chunk = samples[i:i + 16]
        batch = unmerged.collator.batch([unmerged.preprocess(s.image) for s in chunk],
                                        [s.prompt for s in chunk], [s.answer for s in chunk])
        batches.append(normalise_batch(batch, scale_of(unmerged.preprocess)))  # uint8 when normalised on the device
    # The base: the same VPG + LLM the adapters were trained on, with no adapters at all.
    ref = read_artifact(args.adapters, verify=False).manifest["inputs"]["base"]["source"]
    blip2 = load_base(ref, "qformer").blip2
    base_model = MMAModel(blip2.language_model, QFormerFrontEnd(blip2)).eval()
    t_base = timed(base_model, batches, args.repeats)
    t_merged = timed(merged.model, batches, args.repeats)
    t_unmerged = timed(unmerged.model, batches, args.repeats)
    print(f"base {t_base * 1000:.1f} ms, merged {t_merged * 1000:.1f} ms, unmerged adapters {t_unmerged * 1000:.1f} ms "
          f"(best of {args.repeats}, {len(batches)} batches of 16)")
    print(f"merged / base = {t_merged / t_base:.3f} (goal <= 1.02); unmerged / base = {t_unmerged / t_base:.3f}")


if __name__ == "__main__":
    main()
