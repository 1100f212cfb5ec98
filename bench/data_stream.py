"""Streaming image data: peak RSS must not grow with the dataset; images/s with 0, 2 and 4 workers.

Writes 8,000 distinct 640x480 JPEGs (random noise plus a gradient, so each one decodes for
real) into a temporary folder, then trains the same number of steps with the shared training
loop on the first 1,000 and on all 8,000, with a tiny random ``Blip2VisionModel`` at 224 px as
the model (cheap, so the loop is bound by the loader: decoding + resizing to 224 px). Each run is
a fresh subprocess; the parent samples the resident memory of the whole process tree (the
training process and its DataLoader workers) every 20 ms and reports the peak. Printed: the peak
RSS on 1k and 8k images and their ratio (goal: within 10%), and images/s per worker count.

``--device-normalise`` instead compares the two pixel formats the workers can ship (issue #16):
float32 pixels rescaled and normalised in the worker (the HF processor's full transform) against
uint8 pixels only resized, normalised afterwards by ``vltool.data.device_pixels`` in the main
process (the "device" on this CPU machine). Printed per worker count: images/s through the
training DataLoader alone and with the normalisation, bytes per batch, the normalisation's own
cost per batch, the largest difference between the two paths' pixels, and the ratios.

``--code DIR`` runs the runs on another checkout of vltool (e.g. the in-RAM image table before
streaming: ``git worktree add /tmp/old <commit>``), which is how the "before" figures in
``bench/results/cpu_data_stream.txt`` were measured.

    python bench/data_stream.py [--steps 125] [--batch 16] [--workers 0 2 4] [--code DIR]
    python bench/data_stream.py --device-normalise [--steps 60] [--batch 16] [--workers 0 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _watch import run_watched  # bench/_watch.py, beside this script

HERE = Path(__file__).resolve().parent


def write_jpegs(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, 640, dtype=np.float32)[None, :, None]
    paths = []
    for i in range(n):
        path = folder / f"{i:05d}.jpg"
        if not path.is_file():
            noise = rng.integers(0, 56, (480, 640, 3), dtype=np.uint8)
            Image.fromarray((noise + ramp).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_child(args: argparse.Namespace, n_images: int, workers: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.code:
        env["PYTHONPATH"] = str(Path(args.code).resolve())
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--images", str(args.images),
           "--n", str(n_images), "--workers", str(workers), "--steps", str(args.steps), "--batch", str(args.batch)]
    peak, out, code = run_watched(cmd, env, tree_rss)
    if code:
        raise SystemExit(f"child failed ({code}): {' '.join(cmd)}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = peak / 2**20
    return result


def child(args: argparse.Namespace) -> None:
    import torch
    from transformers import Blip2VisionConfig, Blip2VisionModel, BlipImageProcessor

    from vltool.data.sample import Sample
    from vltool.data.vl_dataset import VLDataset, image_preprocessor
    from vltool.training.loop import make_accelerator, train
    from vltool.training.settings import TrainSettings

    torch.set_num_threads(1)
    paths = sorted(Path(args.images).glob("*.jpg"))[: args.n]
    samples = [Sample(str(i), str(p), "", "a photo") for i, p in enumerate(paths)]
    processor = BlipImageProcessor(size={"height": 224, "width": 224})
    dataset = VLDataset(samples, image_preprocessor(processor))
    torch.manual_seed(0)
    vit = Blip2VisionModel(Blip2VisionConfig(image_size=224, patch_size=14, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=1, num_attention_heads=2))

    def collate(rows):
        return torch.stack([dataset.images[i] for i, _, _ in rows])

    def loss(model, pixels):
        return model(pixel_values=pixels).last_hidden_state.pow(2).mean()

    settings = TrainSettings(lr=1e-4, max_steps=args.steps, batch_size=args.batch, precision="no", seed=0,
                             num_workers=args.workers, log_every=10**9)
    started = time.perf_counter()
    train(vit, loss, dataset, settings, collate_fn=collate, accelerator=make_accelerator("no", cpu=True))
    wall = time.perf_counter() - started
    print(json.dumps({"images": args.n, "workers": args.workers, "steps": args.steps,
                      "images_per_s": args.steps * args.batch / wall, "wall_s": wall}))


def _loader_rate(processor, paths: list[Path], uint8: bool, workers: int, steps: int, batch: int) -> dict:
    """images/s of the training DataLoader (first batch excluded: worker start-up), with and without
    the on-device normalisation in this process, bytes per batch, and one batch for comparison."""
    import torch

    from vltool.data.device_pixels import normalise, scale_of
    from vltool.data.sample import Sample
    from vltool.data.vl_dataset import VLDataset, image_preprocessor
    from vltool.training.data_loader import make_loader

    preprocess = image_preprocessor(processor, uint8=uint8)
    scale = scale_of(preprocess)
    assert (scale is not None) == uint8, "the processor failed the uint8 check"
    dataset = VLDataset([Sample(str(i), str(p), "", "a photo") for i, p in enumerate(paths)], preprocess)

    def collate(rows):
        return torch.stack([dataset.images[i] for i, _, _ in rows])

    order = [list(range(s * batch, (s + 1) * batch)) for s in range(steps + 1)]
    loader = make_loader(dataset, order, collate, workers)
    it = iter(loader)
    first = next(it)
    norm_s, started = 0.0, time.perf_counter()
    for pixels in it:
        t = time.perf_counter()
        normalise(pixels, scale)
        norm_s += time.perf_counter() - t
    wall = time.perf_counter() - started
    return {"images_per_s": steps * batch / (wall - norm_s), "with_norm_images_per_s": steps * batch / wall,
            "norm_ms_per_batch": 1000 * norm_s / steps, "bytes_per_batch": first.element_size() * first.numel(),
            "first": normalise(first, scale)}


def _normalise_costs(processor, batch: int, repeats: int = 20) -> dict:
    """ms per [batch, 3, 224, 224] batch: the table lookup vs a float affine map (x * a + b)."""
    import torch

    from vltool.data.device_pixels import PixelScale

    scale = PixelScale.from_processor(processor)
    pixels = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8)
    a = torch.tensor([processor.rescale_factor / s for s in processor.image_std]).view(3, 1, 1)
    b = torch.tensor([-m / s for m, s in zip(processor.image_mean, processor.image_std)]).view(3, 1, 1)
    out = {}
    for name, fn in (("table", lambda: scale(pixels)), ("affine", lambda: pixels.float() * a + b)):
        fn()
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        out[name] = 1000 * (time.perf_counter() - started) / repeats
    return out


def compare_normalise(args: argparse.Namespace) -> None:
    import torch
    from transformers import BlipImageProcessor

    torch.set_num_threads(1)
    paths = sorted(Path(args.images).glob("*.jpg"))[: (args.steps + 1) * args.batch]
    processor = BlipImageProcessor(size={"height": 224, "width": 224})
    best: dict[tuple[int, bool], dict] = {}
    for rep in range(args.repeats):
        for workers in args.workers:
            for uint8 in (False, True):
                row = _loader_rate(processor, paths, uint8, workers, args.steps, args.batch)
                key = (workers, uint8)
                print(f"  run {rep + 1}: workers {workers} {'uint8  ' if uint8 else 'float32'} "
                      f"{row['images_per_s']:6.1f} images/s loader, {row['with_norm_images_per_s']:6.1f} with "
                      f"normalise", flush=True)
                if key not in best or row["with_norm_images_per_s"] > best[key]["with_norm_images_per_s"]:
                    best[key] = row
    print(f"# best of {args.repeats} runs per row; {args.steps} batches x {args.batch} images at 224 px, "
          "BLIP-2 processor (bicubic resize, CLIP mean/std)")
    for workers in args.workers:
        f32, u8 = best[(workers, False)], best[(workers, True)]
        diff = float((f32["first"] - u8["first"]).abs().max())
        for name, row in (("float32", f32), ("uint8  ", u8)):
            print(f"workers {workers}  {name}  {row['images_per_s']:6.1f} images/s loader  "
                  f"{row['with_norm_images_per_s']:6.1f} images/s with on-device normalise  "
                  f"{row['bytes_per_batch'] / 2**20:5.2f} MiB/batch  normalise {row['norm_ms_per_batch']:5.2f} ms/batch")
        print(f"  -> workers {workers}: uint8 / float32 images/s = {u8['images_per_s'] / f32['images_per_s']:.2f}x "
              f"loader, {u8['with_norm_images_per_s'] / f32['with_norm_images_per_s']:.2f}x with normalise; "
              f"bytes {f32['bytes_per_batch'] / u8['bytes_per_batch']:.1f}x fewer; max |pixel difference| {diff:g}",
              flush=True)
    costs = _normalise_costs(processor, args.batch)
    print(f"normalise one [{args.batch}, 3, 224, 224] uint8 batch on this CPU (1 thread): table lookup "
          f"{costs['table']:.2f} ms, float affine x*a+b {costs['affine']:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=125)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    ap.add_argument("--sizes", type=int, nargs=2, default=[1000, 8000])
    ap.add_argument("--code", help="a vltool checkout to measure instead of this one")
    ap.add_argument("--images", help="folder of the generated JPEGs (default: a temporary one, reused)")
    ap.add_argument("--device-normalise", action="store_true",
                    help="compare float32-normalised with uint8 batches (normalised afterwards) instead")
    ap.add_argument("--repeats", type=int, default=2, help="--device-normalise: runs per row, the best is kept")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.workers = args.workers[0]
        return child(args)
    args.images = Path(args.images or Path(tempfile.gettempdir()) / "vltool-bench-jpegs")
    started = time.perf_counter()
    if args.device_normalise:
        write_jpegs(args.images, (args.steps + 1) * args.batch)
        print(f"# {(args.steps + 1) * args.batch} JPEGs 640x480 in {args.images}; "
              f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
        return compare_normalise(args)
    write_jpegs(args.images, max(args.sizes))
    print(f"# {max(args.sizes)} JPEGs 640x480 in {args.images} ({time.perf_counter() - started:.0f} s); "
          f"{args.steps} steps x batch {args.batch}; code {args.code or 'this checkout'}")
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}")
    rows = []
    for workers in args.workers:
        for n in args.sizes:
            row = run_child(args, n, workers)
            rows.append(row)
            print(f"workers {workers}  images {n:5d}  peak RSS {row['peak_rss_mb']:7.0f} MB  "
                  f"{row['images_per_s']:6.1f} images/s  ({row['wall_s']:.1f} s)", flush=True)
        small, large = rows[-2]["peak_rss_mb"], rows[-1]["peak_rss_mb"]
        print(f"  -> workers {workers}: peak RSS {args.sizes[1]} / {args.sizes[0]} images = {large / small:.2f}x "
              f"({'within' if large <= 1.1 * small else 'NOT within'} 10%)", flush=True)


if __name__ == "__main__":
    main()
