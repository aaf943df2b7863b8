#!/usr/bin/env bash
# Pose-based data balancing, with and without (docs/balance.md): CNN-6, fast recipe, Wing loss, the same number of
# steps and batch size for both (the same budget), on ytf68-train with 10% of the identities held out as 'val';
# both models are then scored on the same val faces, broken down by the pose bins of the balanced set's model.
# Usage: scripts/balance_compare.sh [STEPS] [DATA_ROOT]      (OUT=work/balance to change the output folder)
set -euo pipefail
STEPS=${1:-3000}
DATA=${2:-../shared/data/ytf68-train}
OUT=${OUT:-work/balance}
mkdir -p "$OUT"

# 1. the prepared set (kept if it exists) and its balanced twin (reuses work/ytf/crops.npy, writes pose_model.json)
[ -f work/ytf/manifest.jsonl ] || facelm prepare "$DATA" --out work/ytf --holdout 0.1 -q > "$OUT/prepare.json"
facelm balance work/ytf --out work/ytf-bal --plot "$OUT/pose_hist.png" > "$OUT/balance.json"

# 2. two trainings at a time, one thread each, same seed, steps and recipe
train() {  # data run
  facelm train --data "$1" --arch cnn6 --loss wing --recipe fast --steps "$STEPS" --threads 1 --seed 0 -q \
    --out "$OUT/$2" > "$OUT/$2.json"
}
train work/ytf cnn6-wing-plain & train work/ytf-bal cnn6-wing-balanced & wait

# 3. the same val faces (work/ytf and work/ytf-bal have identical val lines), per pose bin; last.pt, not best.pt,
#    so that neither model was picked on the faces it is scored on
facelm evaluate --data work/ytf --split val --protocol custom --pose-model work/ytf-bal/pose_model.json \
  --per-face "$OUT/per_face.csv" "$OUT/cnn6-wing-plain/last.pt" "$OUT/cnn6-wing-balanced/last.pt" \
  > "$OUT/evaluate.jsonl" 2> "$OUT/evaluate.txt"

python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
recs = [json.loads(line) for line in (out / "evaluate.jsonl").read_text().splitlines() if line.strip()]
plain, bal = recs
bl = json.loads((out / "balance.json").read_text())
print(f"pose bins: K={bl['bins']}, PC{bl['component']} (asymmetry rho {bl['asymmetry_corr']:.3f}), "
      f"train faces {bl['faces_before']} -> {bl['faces_after']}")
print(f"normaliser {plain['normaliser']}, split {plain['split']}, {plain['n']} faces; NME and FR@0.1 in %")
print("| pose bin | pose coordinate | train faces before/after | val faces | NME plain | NME balanced "
      "| FR@0.1 plain | FR@0.1 balanced |")
print("|---|---|---|---|---|---|---|---|")
for tag, a in plain["pose_bins"].items():
    b = bal["pose_bins"][tag]
    j = a["bin"]
    rng = "-" if a["range"] is None else f"[{a['range'][0]:+.3f}, {a['range'][1]:+.3f})"
    tr = f"{bl['hist_before'][j]}/{bl['hist_after'][j]}" if j >= 0 else "-"
    print(f"| {tag} | {rng} | {tr} | {a['n']} | {100 * a['nme']:.2f} | {100 * b['nme']:.2f} "
          f"| {100 * a['fr@0.1']:.1f} | {100 * b['fr@0.1']:.1f} |")
print(f"| all | | {bl['faces_before']}/{bl['faces_after']} | {plain['n']} | {100 * plain['nme']:.2f} "
      f"| {100 * bal['nme']:.2f} | {100 * plain['fr@0.1']:.1f} | {100 * bal['fr@0.1']:.1f} |")
PY
