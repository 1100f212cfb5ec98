"""Peak anonymous memory of whole vltool runs on 1k vs 10k images: flat within 10% (issue #23).

Each run is a real ``vltool`` subprocess on tiny replicas of the real hub repositories
(``tests/support/real_layouts.py``: Salesforce/blip2-opt-2.7b and facebook/opt-6.7b layouts in an HF
cache, resolved through the ``opt2.7b`` / ``opt6.7b`` aliases), for one epoch at batch 25:

- ``transfer (cache)``: warm-up from the feature cache (built in the run), then stage 2;
- ``transfer (no cache)``: the same with ``warmup.feature_cache=false``;
- ``tune-mma``: MM-Adapters on the first run's vpg artifact, LLaVA-format data (a third text-only).

Caption files are LAVIS COCO Karpathy train JSON with 2 captions an image (so the warm-up draws
each image twice and the cache pays). The parent samples, every 20 ms, RssAnon + RssShmem of
the vltool process and every descendant (DataLoader workers; forked pages a worker shares are
counted in each process, as the issue measured) from ``/proc``, and reports the peak.

Each measured run is followed by the same command under ``tracemalloc`` (a separate process, so
its overhead is not in the figures), stopped with a snapshot when the training loop builds its
first DataLoader (data index, models and feature cache live); its top allocations, and what grew
from 1k to 10k images, go to ``bench/results/memory_flat/``.

``--image-size 64x48`` (default) keeps decoding cheap on 2 CPUs (the images are resized to the
replica's 16 px right away, so the pixel size does not change what is kept per sample);
``--image-size 640x480 --sizes 500 3000 --configs transfer-nocache`` is the issue's own case.

    python bench/memory_flat.py [--sizes 1000 10000] [--configs transfer-cache transfer-nocache tune-mma]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from _watch import run_watched  # bench/_watch.py, beside this script

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "memory_flat"
CONFIGS = ("transfer-cache", "transfer-nocache", "tune-mma")


def anon_kib(pid: int) -> int:
    """RssAnon + RssShmem of one process, KiB (0 once it is gone)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return int(fields["RssAnon"].split()[0]) + int(fields["RssShmem"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0


def tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        try:
            pids += [int(c) for c in Path(f"/proc/{pids[i]}/task/{pids[i]}/children").read_text().split()]
        except OSError:
            pass
        i += 1
    return pids


def write_images(folder: Path, n: int, size: tuple[int, int]) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, w, dtype=np.float32)[None, :, None]
    for i in range(n):
        path = folder / f"{i:06d}.jpg"
        if not path.is_file():
            noise = rng.integers(0, 56, (h, w, 3), dtype=np.uint8)
            Image.fromarray((noise + ramp).astype(np.uint8)).save(path, quality=90)


CAPTION_WORDS = ["a", "red", "circle", "big", "blue", "square", "on", "the", "left", "right", "small", "green", "triangle", "photo", "of", "cat", "mat", "dog"]


def caption(i: int) -> str:
    return " ".join(CAPTION_WORDS[(i * 5 + k * 7) % len(CAPTION_WORDS)] for k in range(4 + i % 5))


def write_data(root: Path, n: int) -> tuple[Path, Path]:
    coco = [{"image": f"img/{i // 2:06d}.jpg", "caption": caption(i), "image_id": f"coco_{i // 2}"}
            for i in range(2 * n)]
    llava = [{"id": str(i), **({"image": f"img/{i:06d}.jpg"} if i % 3 else {}), "conversations": [
        {"from": "human", "value": ("<image>\n" if i % 3 else "") + "what is in it? " + caption(i + 1)},
        {"from": "gpt", "value": caption(i)}]} for i in range(n)]
    (root / f"coco-{n}.json").write_text(json.dumps(coco))
    (root / f"llava-{n}.json").write_text(json.dumps(llava))
    return root / f"coco-{n}.json", root / f"llava-{n}.json"


def command(config: str, n: int, work: Path, batch: int, vpg: Path | None, out: Path | None = None) -> list[str]:
    coco, llava = work / f"coco-{n}.json", work / f"llava-{n}.json"
    out = out or work / "runs" / f"{config}-{n}"
    common = ["--images", str(work), "--out", str(out), "--force", f"train.batch_size={batch}", "train.epochs=1",
              "train.precision=no", "train.num_workers=1"]
    if config == "tune-mma":
        # max_length: the replica OPT has 64 positions
        return ["tune-mma", "--model", str(vpg), "--front-end", "qformer", "--data", f"llava:{llava}", *common,
                "max_length=60"]
    return ["transfer", "--src", "opt2.7b", "--dst", "opt6.7b", "--data", f"coco:{coco}", *common, "warmup.epochs=1",
            f"warmup.feature_cache={'true' if config == 'transfer-cache' else 'false'}"]


def run(argv: list[str], env: dict, trace: Path | None = None) -> tuple[float, float, str]:
    """(peak anon MiB over the tree, seconds, output tail) of one vltool run."""
    head = [sys.executable, str(Path(__file__).resolve()), "--trace", str(trace), "--"] if trace else \
        [sys.executable, "-m", "vltool"]
    started = time.perf_counter()
    peak, out, code = run_watched([*head, *argv], env, lambda pid: sum(anon_kib(p) for p in tree(pid)),
                                  merge_stderr=True)
    if code:
        raise SystemExit(f"vltool {' '.join(argv)} failed ({code}):\n{out[-3000:]}")
    return peak / 1024, time.perf_counter() - started, out


def traced(trace: Path, argv: list[str]) -> None:
    """Runs in the child: vltool in-process under tracemalloc, stopped when the training loop builds its
    first DataLoader (the data index, the models and the feature cache all live, training about to
    start); that snapshot goes to ``trace``. Stopping there keeps the traced run short: tracemalloc
    slows every allocation, and the measured run already covers the training steps."""
    import tracemalloc

    tracemalloc.start(4)
    from vltool.cli import app
    from vltool.training import loop

    def snapshot_and_stop(*args, **kwargs):
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        snap.dump(str(trace))
        os._exit(0)

    loop.make_loader = snapshot_and_stop
    app(argv, standalone_mode=False)


def top_report(trace: Path, smaller: Path | None, label: str) -> str:
    import tracemalloc

    snap = tracemalloc.Snapshot.load(str(trace))
    total = sum(s.size for s in snap.statistics("filename"))
    lines = [f"## {label}: tracemalloc when the first training DataLoader is built, {total / 2**20:.1f} MiB traced",
             "# top allocations by line"]
    lines += [str(s) for s in snap.statistics("lineno")[:15]]
    if smaller is not None and smaller.is_file():
        diff = snap.compare_to(tracemalloc.Snapshot.load(str(smaller)), "lineno")
        grown = sum(d.size_diff for d in diff)
        lines += [f"# what grew from the smaller run ({grown / 2**20:+.2f} MiB traced in all)"]
        lines += [str(d) for d in diff[:10]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--sizes", nargs=2, type=int, default=[1000, 10000])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--image-size", default="64x48")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vltool-memory-flat"))
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--trace", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.trace:
        traced(args.trace, [a for a in rest if a != "--"])
        return
    size = tuple(int(v) for v in args.image_size.split("x"))
    work = args.work / args.image_size
    small, large = args.sizes
    started = time.perf_counter()
    write_images(work / "img", large, size)
    for n in (small, large):
        write_data(work, n)
    hf = args.work / "hf"
    if not (hf / "hub").is_dir():
        sys.path[:0] = [str(HERE.parent / "tests" / "support"), str(HERE.parent / "tests")]
        from real_layouts import build_hub_cache

        build_hub_cache(hf, only=["Salesforce/blip2-opt-2.7b", "facebook/opt-6.7b"])
    env = {**os.environ, "HF_HOME": str(hf), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "200"}
    env.pop("HF_HUB_CACHE", None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"# python bench/memory_flat.py --sizes {small} {large} --image-size {args.image_size} --batch {args.batch}; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC (data + replicas ready in "
          f"{time.perf_counter() - started:.0f} s)")
    print("# peak anon = max over time of sum(RssAnon + RssShmem) over the vltool process and its DataLoader worker")
    vpg = work / "runs" / f"vpg-for-mma-{small}"
    for config in args.configs:
        if config == "tune-mma" and not (vpg / "manifest.json").is_file():
            run(command("transfer-nocache", small, work, args.batch, None, vpg), {**env, "VLTOOL_HOME": str(work / "home-vpg")})
        peaks = []
        for n in (small, large):
            home = work / f"home-{config}-{n}"
            shutil.rmtree(home, ignore_errors=True)  # the feature cache is built in the measured run
            argv = command(config, n, work, args.batch, vpg)
            peak, seconds, _ = run(argv, {**env, "VLTOOL_HOME": str(home)})
            peaks.append(peak)
            print(f"{config:17} images {n:>6}  peak anon {peak:7.0f} MiB  ({seconds:.0f} s)", flush=True)
            if not args.no_trace:
                shutil.rmtree(home, ignore_errors=True)
                trace = RESULTS / f"{config}-{args.image_size}-{n}.tracemalloc"
                run(argv, {**env, "VLTOOL_HOME": str(home)}, trace)
                smaller = RESULTS / f"{config}-{args.image_size}-{small}.tracemalloc" if n == large else None
                report = top_report(trace, smaller, f"{config}, {n} images of {args.image_size}")
                (RESULTS / f"{config}-{args.image_size}-{n}.txt").write_text(report)
        ratio = peaks[1] / peaks[0]
        print(f"  -> {config}: peak anon {large} / {small} images = {ratio:.3f}x "
              f"({'within' if ratio <= 1.10 else 'NOT within'} 10%)", flush=True)
    for stale in RESULTS.glob("*.tracemalloc"):
        stale.unlink()  # the text reports are kept; the snapshots are large


if __name__ == "__main__":
    main()
