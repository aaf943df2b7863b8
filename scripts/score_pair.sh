#!/usr/bin/env bash
# Score a candidate stage pair end to end before shipping it (models/README.md, "Recipe"): the default `facelm
# predict` (YuNet, both stages, full TTA) at fp32 on the held-out val images of each prepared set, with the box map
# of the shipped models/cnn6.onnx (so candidates differ only in their weights), scored by `facelm evaluate`.
#
#   scripts/score_pair.sh STAGE1 STAGE2 OUT        (STAGEn: a checkpoint .pt, or `shipped` for models/*.onnx)
#   SETS="w300 mtfl" WORK=work THREADS=2 scripts/score_pair.sh work/runs/s1occ4/last.pt work/runs/s2occ4/last.pt work/pc-occ4
#
# Checkpoints are exported as they would ship (`--weights $WEIGHTS`, default int8, `--label-shift $LABEL_SHIFT`,
# default 0.012, the shipped value: models/README.md, "Label shift") to OUT/models. Per set, OUT/SET.jsonl (kept: a
# second run only scores it again), OUT/SET.eval.json, and one summary line on stdout (n, missing, NME, FR@10%,
# AUC@10%). Default SETS: w300 mtfl helen29 infan w300occ w300bad helen29bad mtflbad (w300occ: scripts/occlude_set.py
# work/w300 work/w300occ; the *bad sets: scripts/degrade_set.py work/SET work/SETbad).
set -euo pipefail
[ $# -eq 3 ] || { sed -n 2,11p "$0" >&2; exit 2; }
S1=$1; S2=$2; OUT=$3
WORK=${WORK:-work}
SETS=${SETS:-"w300 mtfl helen29 infan w300occ w300bad helen29bad mtflbad"}
mkdir -p "$OUT/models"
stage() {  # source name
  [ -f "$OUT/models/$2.onnx" ] && return
  if [ "$1" = shipped ]; then cp "models/$2.onnx" "$OUT/models/"
  else facelm export "$1" --out "$OUT/models/$2.onnx" --weights "${WEIGHTS:-int8}" --label-shift "${LABEL_SHIFT:-0.012}" -q \
    > "$OUT/export-$2.json"; fi
}
stage "$S1" cnn6
stage "$S2" cnn6r
python - "$OUT/boxmap.json" <<'PY'
import json, sys
from facelm.modelfile import read_onnx_meta
json.dump(read_onnx_meta("models/cnn6.onnx")["detector_box_maps"]["yunet"], open(sys.argv[1], "w"))
PY
for s in $SETS; do
  [ -f "$WORK/$s/manifest.jsonl" ] || { echo "score_pair: $WORK/$s: not a prepared set, skipped" >&2; continue; }
  python - "$WORK/$s" > "$OUT/${s}_val.txt" <<'PY'
import sys
from facelm.manifest import load_manifest
m = load_manifest(sys.argv[1]).split("val")
print("\n".join(sorted({str((m.root / x.image).resolve()) for x in m.samples})))
PY
  if [ ! -s "$OUT/$s.jsonl" ]; then
    facelm predict "$OUT/${s}_val.txt" --models "$OUT/models" --precision fp32 --tta full \
      --box-map "$OUT/boxmap.json" --threads "${THREADS:-1}" -q > "$OUT/$s.jsonl.tmp" || [ $? -eq 1 ]
    mv "$OUT/$s.jsonl.tmp" "$OUT/$s.jsonl"
  fi
  # exit 1: faces the detector missed (counted as failures, the summary is still written)
  facelm evaluate --data "$WORK/$s" --split val "$OUT/$s.jsonl" -q > "$OUT/$s.eval.json" || [ $? -eq 1 ]
  python - "$s" "$OUT/$s.eval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
r = r[0] if isinstance(r, list) else r
print(json.dumps({"set": sys.argv[1], **{k: r.get(k) for k in ("n", "missing", "nme", "fr@0.1", "auc@0.1")}}))
PY
done
