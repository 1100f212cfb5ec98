#!/usr/bin/env bash
# Real scale: give Vicuna-7B the eyes of BLIP-2 OPT-6.7B (the official VL-Vicuna source), then export a plain HF BLIP-2 folder.
# Needs the models in the local HF cache (see `vltool zoo list`) and the data of the official runs in LAVIS's caption
# formats under one image root: the warm-up on COCO + SBU (one epoch), stage 2 on COCO + VG + LAION-COCO (0.1/0.2/0.7,
# 14.4M samples). The recipe names them (warmup.data, data.train); edit its paths or give yours here.
# Usage: bash recipes/vpgtrans-then-merge.sh IMAGE_ROOT [OUT_DIR]
#   e.g. IMAGE_ROOT holds coco/, sbu_captions/, vg/ and laion-coco/ as the recipe's relative paths expect.
# Multi-GPU: prefix the training lines with `accelerate launch -m` instead of `vltool`.
set -euo pipefail
images=$1
out=${2:-runs}
recipe=vpgtrans/opt6.7b-to-vicuna7b

vltool transfer -r "$recipe" --dry-run                       # parameters, memory and the cost of both stages
vltool warmup   -r "$recipe" --images "$images" --out "$out/vicuna7b-warmup"          # warmup.data: COCO + SBU
vltool transfer -r "$recipe" --images "$images" --from-warmup "$out/vicuna7b-warmup" \
    --out "$out/vicuna7b-vpg"                                                         # data.train: the stage-2 mix
vltool merge "$out/vicuna7b-vpg" --out "$out/blip2-vicuna7b-hf"
vltool eval "$out/blip2-vicuna7b-hf" -r eval/vqav2 --images "$images/coco" --out "$out/eval/vqav2.json"
