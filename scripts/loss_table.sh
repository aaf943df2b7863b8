#!/usr/bin/env bash
# Reproduce the loss comparison of docs/training.md: CNN-6 on ytf68-train (10% of identities held out),
# the same number of steps (so the same wall-clock) for each loss, two runs at a time with one thread each.
# Usage: scripts/loss_table.sh [STEPS] [DATA_ROOT]
set -euo pipefail
STEPS=${1:-2000}
DATA=${2:-../shared/data/ytf68-train}
OUT=${OUT:-work/losses}
mkdir -p "$OUT"
[ -f work/ytf/manifest.jsonl ] || facelm prepare "$DATA" --out work/ytf --holdout 0.1 -q > "$OUT/prepare.json"
run() {  # loss [extra args]
  local loss=$1; shift
  facelm train --data work/ytf --arch cnn6 --loss "$loss" --steps "$STEPS" --threads 1 --seed 0 -q \
    --out "$OUT/cnn6-$loss" "$@" > "$OUT/cnn6-$loss.json"
}
run wing & run l2 & wait
run l1 & run smooth-l1 & wait
python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| loss | val NME (inter-ocular) | best | steps | seconds |")
print("|---|---|---|---|---|")
for loss in ["l2", "l1", "smooth-l1", "wing"]:
    s = json.loads((out / f"cnn6-{loss}.json").read_text())
    print(f"| {loss} | {s['final_val_nme']:.4f} | {s['best_val_nme']:.4f} | {s['steps']} | {s['seconds']:.0f} |")
PY
