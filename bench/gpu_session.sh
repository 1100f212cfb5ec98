#!/usr/bin/env bash
# The one prepared script of a GPU session for issue #16: every throughput / memory lever, one at
# a time, at real scale with random weights, plus the sharded-training check; about 6-8 minutes on
# an H100/H200 after the machine has started. Writes $OUT/session.log (every JSON row) and
# $OUT/summary.md (the table: samples/s, MFU, peak memory, the dry-run estimate and its error).
#
# Here, first:   bash bench/gpu_wheels.sh          (wheels the GPU image lacks, into .wheels-gpu/)
# Device call:   command "bash bench/gpu_session.sh", carry [".wheels-gpu"], timeout_s 590
# On the CPU:    TINY=1 OUT=/tmp/gpu-session bash bench/gpu_session.sh   (tiny models: checks the script)
set -u
OUT=${OUT:-bench/bench-out/gpu-session}
mkdir -p "$OUT"
LOG="$OUT/session.log"
: > "$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
if [ -d .wheels-gpu ] && [ -z "${TINY:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .wheels-gpu/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site" || { echo "wheel install failed"; exit 1; }
fi
TINYFLAG=${TINY:+--tiny}
STEPS=${STEPS:-6}
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"; python3 -c "import torch, transformers, accelerate; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"; } | tee -a "$LOG"

run() {  # run NAME [gpu_real_scale flags...]: one lever setting; its rows are tagged with NAME
  local name=$1; shift
  echo "### run $name" | tee -a "$LOG"
  local started=$SECONDS
  timeout "${RUN_TIMEOUT:-150}" python3 bench/gpu_real_scale.py $TINYFLAG --steps "$STEPS" "$@" 2>>"$OUT/errors.log" \
    | grep -E '^\{"(phase|device)' | tee -a "$LOG"
  echo "### end $name rc=${PIPESTATUS[0]} ${SECONDS-started}s" | tee -a "$LOG"
}

# Baseline (the product's defaults: SDPA, frozen towers in bf16, length buckets), batch sweep.
run base --phases warmup_cached,warmup,stage2,mma --batches 16,32,64,128  # up to what fits: OOM rows say so
# Levers, one at a time against the baseline, at micro-batch 32.
run frozen_fp32 --phases stage2,mma --batches 32 --frozen-dtype fp32
run eager_attention --phases stage2,mma --batches 32 --attn eager
run fused_adamw --phases stage2,mma --batches 32 --fused-adamw
run no_bucketing --phases stage2,mma --batches 32 --no-bucket
run grad_ckpt --phases stage2,mma --batches 32,128 --grad-ckpt
run accum4 --phases stage2 --batches 32 --accum 4
run opt67b --phases stage2 --batches 32 --target opt-6.7b
# Sharded training: the loop's fixture under DDP and FSDP2 on this GPU (ZeRO needs deepspeed,
# which the image lacks: reported as not run).
if [ -z "${TINY:-}" ]; then
  echo "### distributed" | tee -a "$LOG"
  NUM=1 OUT_DIST=/tmp/vltool-dist timeout 120 bash bench/gpu_distributed_check.sh 2>&1 | tail -n 20 | tee -a "$LOG"
fi
# Last: compiling 32 + 39 layers takes the longest, and a run cut short by the device's time
# limit still returns session.log (bench/gpu_session_table.py makes the table from it here).
RUN_TIMEOUT=200 run compile_frozen --phases stage2,mma --batches 32 --compile-frozen
python3 bench/gpu_session_table.py "$LOG" > "$OUT/summary.md"
cat "$OUT/summary.md"
