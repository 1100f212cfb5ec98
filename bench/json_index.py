"""Bytes per sample of a JSON source's per-sample index, at 1M synthetic entries (issue #23).

Writes one synthetic file per format (LAVIS COCO Karpathy train JSON with 5 captions an image,
LAVIS ``vg_caption.json`` with 10 region captions an image, LLaVA conversation JSON with one
question/answer pair per entry, COCO-length captions and LLaVA-length answers), then reads each
in a fresh process with vltool's reader and prints, per sample:

- ``index``: what the index holds after reading (process RssAnon after reading, with the
  parsed JSON dropped, minus before; the ``SampleTable``'s arrays and blobs beside it);
- ``peak``: the high-water mark of the read itself (process VmHWM minus the RSS before: the parsed
  JSON document lives while the rows are turned into the table);
- ``as objects``: the same samples as a list of ``Sample`` objects (what readers returned before
  #23), for comparison.

    python bench/json_index.py [--entries 1000000] [--formats coco vg llava]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ["a", "man", "riding", "a", "wave", "on", "top", "of", "a", "surfboard", "near", "the", "beach", "with", "two", "dogs", "and", "a", "small", "red", "boat", "in", "the", "background", "while", "people", "watch", "from", "the", "pier", "on", "a", "sunny", "day"]


def _text(i: int, words: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(words))


def write(fmt: str, n: int, path: Path) -> None:
    if fmt == "coco":
        rows = [{"image": f"train2014/COCO_train2014_{i // 5:012d}.jpg", "caption": _text(i, 10) + ".",
                 "image_id": f"coco_{i // 5}"} for i in range(n)]
    elif fmt == "vg":
        rows = [{"image": f"vg/images/{i // 10}.jpg", "caption": _text(i, 5), "image_id": i // 10} for i in range(n)]
    else:
        rows = [{"id": f"{i:012d}", "image": f"{i // 3:012d}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is the man " + _text(i, 6) + "?"},
            {"from": "gpt", "value": _text(i + 1, 45) + "."}]} for i in range(n)]
    path.write_text(json.dumps(rows))


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(fmt: str, path: str) -> None:
    """Runs in a fresh process: read the file, report the memory figures as one JSON line."""
    from vltool.data.captions import read_caption_list
    from vltool.data.coco import read_coco
    from vltool.data.llava import read_llava

    readers = {"coco": lambda p: read_coco(p, "/data/coco"), "vg": lambda p: read_caption_list(p, "/data", "vg"),
               "llava": lambda p: read_llava(p, "/data/coco/train2017")}
    gc.collect()
    anon0, rss0 = _status("RssAnon"), _status("VmRSS")
    started = time.perf_counter()
    table = readers[fmt](path)
    seconds = time.perf_counter() - started
    gc.collect()
    anon1, peak = _status("RssAnon"), _status("VmHWM")
    objects = list(table)  # the same samples as Sample objects (the index before #23)
    gc.collect()
    anon2 = _status("RssAnon")
    n = len(table)
    print(json.dumps({"n": n, "index": (anon1 - anon0) / n, "table_nbytes": table.nbytes / n,
                      "peak": (peak - rss0) / n, "objects": (anon2 - anon1) / len(objects), "seconds": seconds,
                      "images": len(table.images)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="+", default=["coco", "vg", "llava"])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"# python bench/json_index.py --entries {args.entries}; {platform.machine()}, "
          f"python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    print("# bytes per sample: index = RssAnon kept after reading (SampleTable); table = its arrays + blobs; "
          "peak = VmHWM of the read - RSS before; as objects = the same samples as a list of Sample (before #23)")
    print(f"{'format':7} {'samples':>9} {'images':>8} {'file B/entry':>12} {'index':>7} {'table':>7} {'peak':>7} "
          f"{'as objects':>10} {'read s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            path = Path(tmp) / f"{fmt}.json"
            write(fmt, args.entries, path)
            size = path.stat().st_size
            out = subprocess.run([sys.executable, __file__, "--child", fmt, str(path)], capture_output=True, text=True,
                                 check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"{fmt:7} {r['n']:>9} {r['images']:>8} {size / args.entries:>12.0f} {r['index']:>7.0f} "
                  f"{r['table_nbytes']:>7.0f} {r['peak']:>7.0f} {r['objects']:>10.0f} {r['seconds']:>7.1f}")
            path.unlink()
            verdict = "within" if r["index"] <= 1024 else "OVER"
            print(f"  -> {fmt}: {r['index']:.0f} B a sample kept ({verdict} ~1 KB); as Sample objects "
                  f"{r['objects']:.0f} B ({r['objects'] / max(r['index'], 1):.1f}x)")


if __name__ == "__main__":
    main()
