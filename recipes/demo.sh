#!/usr/bin/env bash
# The demo pipeline as a user chains it (what `vltool demo` runs, minus the report):
#   zoo build -> warmup -> transfer --from-warmup, beside a --from-scratch baseline -> merge -> eval
# Usage: bash recipes/demo.sh [OUT_DIR]      (VLTOOL_HOME selects where the demo world lives)
set -euo pipefail
out=${1:-demo-out}
runs="$out/runs"
recipe=demo/transfer-opt-s-to-llama

vltool zoo build
vltool warmup   -r "$recipe" --out "$runs/warmup" --force
vltool transfer -r "$recipe" --from-warmup "$runs/warmup" --out "$runs/transfer" --force train.max_steps=300
vltool transfer -r "$recipe" --from-scratch --out "$runs/scratch" --force train.max_steps=600
vltool merge "$runs/transfer" --out "$runs/merged" --force
vltool eval "$runs/transfer" "$runs/scratch" "$runs/merged" \
    --data demo:caption --data demo:vqa --data demo:sqa --data demo:text \
    --max-samples 200 --out "$out/eval/eval.json" --force
