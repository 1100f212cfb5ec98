#!/usr/bin/env bash
# The demo pipeline as a user chains it (what `vltool demo` runs, minus the report and plots):
#   zoo build -> warmup -> transfer --from-warmup, beside a --from-scratch baseline (in the
#   background) -> merge -> tune-mma (routed, and one shared adapter) -> merge -> eval
# Usage: bash recipes/demo.sh [OUT_DIR]      (VLTOOL_HOME selects where the demo world lives)
set -euo pipefail
out=${1:-demo-out}
runs="$out/runs"
recipe=demo/transfer-opt-s-to-llama
mkdir -p "$out/logs"

vltool zoo build --only demo-llama,demo-blip2-opt-s,demo-qformer-stage1
vltool warmup   -r "$recipe" --out "$runs/warmup" --force
# The baseline (the paper's TFS: a stage-1 pre-trained Q-Former, a random projector) needs nothing
# from the other arm: run it beside it, one thread each.
OMP_NUM_THREADS=1 vltool transfer -r "$recipe" --from-scratch --qformer demo-qformer-stage1 --out "$runs/scratch" --force \
    train.max_steps=600 > "$out/logs/from-scratch.log" 2>&1 &
scratch=$!
OMP_NUM_THREADS=1 vltool transfer -r "$recipe" --from-warmup "$runs/warmup" --out "$runs/transfer" --force \
    train.max_steps=300
vltool merge "$runs/transfer" --out "$runs/merged" --force
vltool tune-mma -r demo/tune-mma --model "$runs/transfer" --out "$runs/mma" --force
vltool tune-mma -r demo/tune-mma --model "$runs/transfer" --no-router --out "$runs/mma-shared" --force
vltool merge "$runs/mma" --modality image --out "$runs/merged-mma" --force
wait "$scratch"
vltool eval "$runs/transfer" "$runs/scratch" "$runs/merged" "$runs/mma" "$runs/merged-mma" \
    --data demo:caption --data demo:vqa --data demo:sqa --data demo:text \
    --max-samples 120 --out "$out/eval/eval.json" --force
