#!/usr/bin/env bash
# The heatmap family's ablation (docs/heatmap.md): the small stacked hourglass (2 stacks, 64 channels, 128 px input,
# 32 px heatmaps) trained with MSE, AWing, AWing + weighted loss map, + boundary channel and CoordConv, BICE, and
# SMT-Net (BICE + coordinate-residual branch, sigma 2 -> 1), sigma 1 heatmap px otherwise (SIGMA=...), all with the same budget (steps x batch), seed and
# recipe, on ytf68-train with 10% of the identities held out; every model is scored on the same val faces
# (inter-ocular NME) from its last checkpoint (not picked on the val faces).
# Usage: scripts/heatmap_ablation.sh [STEPS] [BATCH] [DATA]   (OUT=work/heatmap, JOBS=1 parallel runs, THREADS=1)
set -euo pipefail
STEPS=${1:-800}
BATCH=${2:-16}
DATA=${3:-../shared/data/ytf68-train}
OUT=${OUT:-work/heatmap}
JOBS=${JOBS:-1}
THREADS=${THREADS:-1}
SIGMA=${SIGMA:-}  # empty: each architecture's default (hourglass 1, smt 2 shrinking to 1)
mkdir -p "$OUT"
[ -f work/ytf/manifest.jsonl ] || facelm prepare "$DATA" --out work/ytf --holdout 0.1 -q > "$OUT/prepare.json"

RUNS=(
  "hg-mse|--arch hourglass --loss mse"
  "hg-awing-map|--arch hourglass --loss awing --loss-map"
  "hg-awing|--arch hourglass --loss awing"
  "hg-awing-map-boundary-coordconv|--arch hourglass --loss awing --loss-map --boundary --coordconv"
  "hg-bice|--arch hourglass --loss bice"
  "smt-bice|--arch smt --loss bice"
)
run() {  # name args  (resumes an interrupted run; skips a finished one)
  local name=$1 args=$2
  [ -f "$OUT/$name/summary.json" ] && return 0
  local resume=()
  [ -f "$OUT/$name/last.pt" ] && resume=(--resume)
  if [ -n "$SIGMA" ] && [[ $args != *"--arch smt"* ]]; then args="$args --sigma $SIGMA"; fi
  # shellcheck disable=SC2086
  facelm train --data work/ytf $args --steps "$STEPS" --batch-size "$BATCH" --threads "$THREADS" --seed 0 -q \
    --out "$OUT/$name" "${resume[@]}" > "$OUT/$name.json"
}
i=0
for spec in "${RUNS[@]}"; do
  run "${spec%%|*}" "${spec#*|}" &
  i=$((i + 1))
  if (( i % JOBS == 0 )); then wait; fi
done
wait

CKS=()
for spec in "${RUNS[@]}"; do CKS+=("$OUT/${spec%%|*}/last.pt"); done
facelm evaluate --data work/ytf --split val "${CKS[@]}" -q > "$OUT/evaluate.jsonl"
python - "$OUT" "${RUNS[@]}" <<'PY'
import json, sys, pathlib
out, specs = pathlib.Path(sys.argv[1]), sys.argv[2:]
recs = [json.loads(x) for x in (out / "evaluate.jsonl").read_text().splitlines() if x.strip()]
print(f"inter-ocular NME on {recs[0]['n']} ytf68 val faces, last checkpoint of each run")
print("| run | options | NME % | FR@10% % | AUC@10% | train img/s | seconds |")
print("|---|---|---|---|---|---|---|")
for spec, r in zip(specs, recs):
    name, args = spec.split("|", 1)
    s = json.loads((out / f"{name}.json").read_text())
    print(f"| {name} | `{args}` | {100 * r['nme']:.2f} | {100 * r['fr@0.1']:.2f} | {r['auc@0.1']:.4f} | "
          f"{s['img_per_s']} | {s['seconds']} |")
PY
