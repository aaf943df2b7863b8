#!/usr/bin/env bash
# Fast vs paper recipe at the same compute budget: CNN-6 + Wing on ytf68-train (10% identities held out),
# both recipes seeing the same number of training images (IMAGES, default 16,000), run side by side with one
# thread each so both get the same machine. Per-image cost at batch 8 and 32 is within noise on this CPU, so
# equal images is equal wall-clock; the JSON summaries record the measured seconds.
# Usage: scripts/recipe_compare.sh [IMAGES] [DATA_ROOT]
set -euo pipefail
IMAGES=${1:-16000}
DATA=${2:-../shared/data/ytf68-train}
OUT=${OUT:-work/recipes}
mkdir -p "$OUT"
[ -f work/ytf/manifest.jsonl ] || facelm prepare "$DATA" --out work/ytf --holdout 0.1 -q > "$OUT/prepare.json"
facelm train --data work/ytf --arch cnn6 --loss wing --recipe fast --steps $((IMAGES / 32)) --threads 1 --seed 0 \
  -q --force --out "$OUT/fast" > "$OUT/fast.json" &
facelm train --data work/ytf --arch cnn6 --loss wing --recipe paper --steps $((IMAGES / 8)) --threads 1 --seed 0 \
  -q --force --out "$OUT/paper" > "$OUT/paper.json" &
wait
python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| recipe | steps x batch | seconds | final val NME (inter-ocular) |")
print("|---|---|---|---|")
for r in ["paper", "fast"]:
    s = json.loads((out / f"{r}.json").read_text())
    print(f"| {r} | {s['steps']} x {s['batch_size']} | {s['seconds']:.0f} | {s['final_val_nme']:.4f} |")
PY
