"""Streaming image data: peak RSS must not grow with the dataset; images/s with 0, 2 and 4 workers.

Writes 8,000 distinct 640x480 JPEGs (random noise plus a gradient, so each one decodes for
real) into a temporary folder, then trains the same number of steps with the shared training
loop on the first 1,000 and on all 8,000, with a tiny random ``Blip2VisionModel`` at 224 px as
the model (cheap, so the loop is bound by the loader: decoding + resizing to 224 px). Each run is
a fresh subprocess; the parent samples the resident memory of the whole process tree (the
training process and its DataLoader workers) every 20 ms and reports the peak. Printed: the peak
RSS on 1k and 8k images and their ratio (goal: within 10%), and images/s per worker count.

``--code DIR`` runs the runs on another checkout of vltool (e.g. the in-RAM image table before
streaming: ``git worktree add /tmp/old <commit>``), which is how the "before" figures in
``bench/results/cpu_data_stream.txt`` were measured.

    python bench/data_stream.py [--steps 125] [--batch 16] [--workers 0 2 4] [--code DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

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
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    peak = 0

    def watch() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    thread.join()
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(cmd)}")
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=125)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    ap.add_argument("--sizes", type=int, nargs=2, default=[1000, 8000])
    ap.add_argument("--code", help="a vltool checkout to measure instead of this one")
    ap.add_argument("--images", help="folder of the generated JPEGs (default: a temporary one, reused)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.workers = args.workers[0]
        return child(args)
    args.images = Path(args.images or Path(tempfile.gettempdir()) / "vltool-bench-jpegs")
    started = time.perf_counter()
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
