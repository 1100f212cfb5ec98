"""The table of a GPU session (bench/gpu_session.sh): one row per (run, phase, micro-batch).

    python bench/gpu_session_table.py SESSION_LOG > summary.md

Columns: samples/s, MFU, peak memory measured by torch, ``--dry-run``'s estimate for the same
shape and its error, and each lever's samples/s relative to the baseline run at the same phase
and micro-batch (measured in the same session).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read(path: Path) -> tuple[list[str], list[dict]]:
    header: list[str] = []
    rows: list[dict] = []
    run = "?"
    for line in path.read_text().splitlines():
        if line.startswith("### run "):
            run = line.split()[2]
        elif line.startswith(("### end ", "### distributed")):
            header.append(line.removeprefix("### "))
        elif line.startswith('{"phase"'):
            rows.append({"run": run, **json.loads(line)})
        elif line.startswith('{"device"') and not any(h.startswith("device") for h in header):
            head = json.loads(line)
            header.append(f"device {head['device']}, peak bf16 {head['peak_bf16_tflops']} TFLOP/s, "
                          f"torch {head['torch']}, {head['date']}, {head['source']} -> {head['target']}")
        elif not line.startswith("{"):
            header.append(line)
    return header, rows


def table(rows: list[dict]) -> list[str]:
    base = {(r["phase"], r.get("micro_batch")): r for r in rows if r["run"] == "base" and "samples_per_s" in r}
    out = ["| run | phase | micro | samples/s | vs base | MFU | peak GiB | estimate GiB | estimate error | padding |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['run']} | {r['phase']} | {r.get('micro_batch', '')} | {r['error']} | | | | | | |")
            continue
        ref = base.get((r["phase"], r["micro_batch"]))
        ratio = f"{r['samples_per_s'] / ref['samples_per_s']:.2f}x" if ref and r["run"] != "base" else ""
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
        err = f"{100 * r['estimate_error']:+.1f}%" if r.get("estimate_error") is not None else "n/a"
        out.append(f"| {r['run']} | {r['phase']} | {r['micro_batch']}x{r['accum']} | {r['samples_per_s']} | {ratio} | "
                   f"{mfu} | {r.get('peak_mem_gb')} | {r.get('estimate_gb')} | {err} | {r['text_padding_share']} |")
    return out


def main() -> None:
    header, rows = read(Path(sys.argv[1]))
    print("\n".join(["# GPU session", ""] + [f"- {h}" for h in header] + [""] + table(rows)))


if __name__ == "__main__":
    main()
