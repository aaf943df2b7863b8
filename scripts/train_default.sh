#!/usr/bin/env bash
# Train, export and score facelm's shipped default 68-point models (models/cnn6.onnx + models/cnn7.onnx) with
# facelm's own commands, end to end. See models/README.md (the model card) for what came out of it.
#
#   scripts/train_default.sh [DATA_ROOT]        (default ../shared/data; OUT=work/default to change the work folder)
#
# Steps: prepare the four 68-point sets into one folder with 10% of the identities held out ('val'), pose-balance
# the training split, train CNN-6 (stage 1) with the Wing loss, train CNN-7 (stage 2) on crops built from
# stage 1's predictions, export both to ONNX (fp16-stored weights, fp32 compute), fit YuNet's box map into
# stage 1, and score the pair on the val split. Every step keeps its output when it already exists, and training
# resumes from last.pt, so an interrupted run picks up where it stopped.
# Budget (env): S1_STEPS, S1_BATCH, S2_STEPS, S2_BATCH, THREADS. The shipped models used the defaults below on
# a 2-core CPU (about 36 min for stage 1 and 60 min for stage 2 while other work shared the machine).
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${OUT:-work/default}
MODELS=${MODELS:-models}
S1_STEPS=${S1_STEPS:-4000}; S1_BATCH=${S1_BATCH:-32}
S2_STEPS=${S2_STEPS:-1600}; S2_BATCH=${S2_BATCH:-16}
THREADS=${THREADS:-0}
mkdir -p "$OUT" "$MODELS"

# 1. one prepared set from the four sources (crop cache built once)
[ -f "$OUT/all68/manifest.jsonl" ] || facelm prepare "$DATA/ytf68-train" "$DATA/utkface-dlib68" \
  "$DATA/infanface-train" "$DATA/fixtures/dlib-train" --out "$OUT/all68" --holdout 0.1 -q > "$OUT/prepare.json"

# 2. pose-based data balancing of the training split (val lines are kept as they are)
[ -f "$OUT/all68-bal/manifest.jsonl" ] || facelm balance "$OUT/all68" --out "$OUT/all68-bal" \
  --plot "$OUT/pose_hist.png" -q > "$OUT/balance.json"

# 3. stage 1: CNN-6, 64 px, Wing (w=10, eps=2), fast recipe; resumes from last.pt when interrupted
train() {  # run-name extra-args...
  local run=$1; shift
  if [ -f "$OUT/$run/summary.json" ]; then return; fi
  local resume=()
  [ -f "$OUT/$run/last.pt" ] && resume=(--resume)
  facelm train --data "$OUT/all68-bal" --loss wing --recipe fast --seed 0 --threads "$THREADS" \
    --out "$OUT/$run" "${resume[@]}" "$@" > "$OUT/$run.json"
}
train cnn6 --arch cnn6 --steps "$S1_STEPS" --batch-size "$S1_BATCH"

# 4. stage 2: CNN-7, 128 px, Wing (w=15, eps=3), on crops built from stage 1's predictions (as at inference)
train cnn7 --arch cnn7 --steps "$S2_STEPS" --batch-size "$S2_BATCH" --stage1 "$OUT/cnn6/best.pt"

# 5. export (torch/onnxruntime parity and the NME of the stored weights are checked on the val split)
facelm export "$OUT/cnn6/best.pt" --out "$MODELS/cnn6.onnx" --weights fp16 --val "$OUT/all68" -q > "$OUT/export-cnn6.json"
facelm export "$OUT/cnn7/best.pt" --out "$MODELS/cnn7.onnx" --weights fp16 --val "$OUT/all68" -q > "$OUT/export-cnn7.json"

# 6. YuNet's box map (detector box -> the ground-truth face square), fitted on the training split
facelm fit-box-map --data "$OUT/all68" --models "$MODELS" -q > "$OUT/box_map.json"

# 7. the model card's numbers: the shipped ONNX pair on the val split, from the ground-truth boxes
scripts/score_default.sh "$OUT" "$MODELS"
