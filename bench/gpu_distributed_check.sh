#!/usr/bin/env bash
# Run the loop's test fixture (tests/support/loop_fixture.py: 8 optimizer steps, 4 micro-batches each,
# dropout, clipping, a checkpoint every 2 steps) under plain DDP and each sharded accelerate config,
# and compare the final trainable weights of every run with the DDP run. Needs >= 2 GPUs for real
# sharding (NUM=1 runs the same code paths on one GPU) and deepspeed installed for the ZeRO configs.
set -u
NUM=${NUM:-2}
OUT=${OUT_DIST:-/tmp/vltool-dist}
rm -rf "$OUT"; mkdir -p "$OUT"
export PYTHONPATH=tests${PYTHONPATH:+:$PYTHONPATH} VLTOOL_FIXTURE_GPU=1
MULTI=""; [ "$NUM" -gt 1 ] && MULTI="--multi_gpu"
accelerate launch $MULTI --num_processes "$NUM" --mixed_precision no tests/support/loop_fixture.py "$OUT/ddp" 8
for cfg in fsdp2 zero2 zero3; do
  if [ "$cfg" != fsdp2 ] && ! python3 -c "import deepspeed" 2>/dev/null; then
    echo "$cfg: not run (deepspeed is not installed)"; continue
  fi
  accelerate launch --config_file "bench/accelerate/$cfg.yaml" --num_processes "$NUM" --mixed_precision no \
    tests/support/loop_fixture.py "$OUT/$cfg" 8 && echo "$cfg: ran" || echo "$cfg: FAILED"
done
python3 - "$OUT" <<'PY'
import sys, pathlib
from safetensors.torch import load_file
out = pathlib.Path(sys.argv[1]); ref = load_file(out / "ddp" / "final.safetensors")
for run in ("fsdp2", "zero2", "zero3"):
    f = out / run / "final.safetensors"
    if not f.exists():
        print(run, "no result"); continue
    got = load_file(f)
    diff = max((got[k].float() - ref[k].float()).abs().max().item() for k in ref if k in got)
    print(run, "keys", sorted(got) == sorted(ref), "max |diff| vs DDP", diff)
PY
