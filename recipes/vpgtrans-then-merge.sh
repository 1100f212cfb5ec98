#!/usr/bin/env bash
# Real scale: give Vicuna-7B the eyes of BLIP-2 OPT-6.7B (the official VL-Vicuna source), then export a plain HF BLIP-2 folder.
# Needs the models in the local HF cache (see `vltool zoo list`) and COCO in LAVIS's Karpathy format.
# Usage: bash recipes/vpgtrans-then-merge.sh COCO_JSON IMAGE_DIR [OUT_DIR]
# Multi-GPU: prefix the training lines with `accelerate launch -m` instead of `vltool`.
set -euo pipefail
coco=$1
images=$2
out=${3:-runs}
recipe=vpgtrans/opt6.7b-to-vicuna7b

vltool transfer -r "$recipe" --dry-run
vltool warmup   -r "$recipe" --data "coco:$coco" --images "$images" --out "$out/vicuna7b-warmup"
vltool transfer -r "$recipe" --from-warmup "$out/vicuna7b-warmup" --out "$out/vicuna7b-vpg"
vltool merge "$out/vicuna7b-vpg" --out "$out/blip2-vicuna7b-hf"
