#!/usr/bin/env bash
# The model card's numbers (models/README.md) and the dlib comparison (docs/benchmarks.md), for the shipped models.
#
#   scripts/score_default.sh [WORK] [MODELS] [DATA_ROOT]    (defaults: work/default models ../shared/data)
#
# 1. The ONNX pair (and stage 1 alone) on the held-out val split of the four merged 68-point sets, from the
#    ground-truth face boxes, overall and per source. The holdout is a hash of each identity, so preparing a source
#    on its own with the same --holdout gives exactly its val faces of the merged set.
# 2. facelm's whole `predict` (YuNet + two stages) and, when dlib is installed (pip install dlib-bin
#    face-recognition-models), dlib's 68-point predictor on the ytf68 val faces: the same faces, each tool from
#    the ground-truth square and from its own detector; every prediction file is scored by `facelm evaluate`.
set -euo pipefail
WORK=${1:-work/default}
MODELS=${2:-models}
DATA=${3:-../shared/data}
S=$WORK/scores
mkdir -p "$S"
PAIR="$MODELS/cnn6.onnx+$MODELS/cnn7.onnx"

[ -f "$WORK/all68/manifest.jsonl" ] || facelm prepare "$DATA/ytf68-train" "$DATA/utkface-dlib68" \
  "$DATA/infanface-train" "$DATA/fixtures/dlib-train" --out "$WORK/all68" --holdout 0.1 -q > /dev/null
for src in ytf68-train utkface-dlib68 infanface-train; do
  [ -f "$WORK/val-$src/manifest.jsonl" ] || facelm prepare "$DATA/$src" --out "$WORK/val-$src" --holdout 0.1 -q \
    > /dev/null
done

# 1. model card: every val face, then per source
facelm evaluate --data "$WORK/all68" --split val "$MODELS/cnn6.onnx" "$PAIR" --plot "$S/ced_val.png" \
  > "$S/val_all.jsonl" 2> "$S/val_all.txt"
for src in ytf68-train utkface-dlib68 infanface-train; do
  facelm evaluate --data "$WORK/val-$src" --split val "$MODELS/cnn6.onnx" "$PAIR" -q > "$S/val_$src.jsonl"
done

# 2. the same ytf68 val faces through facelm predict and dlib
Y=$WORK/val-ytf68-train
python - "$Y" "$S" <<'PY'
import json, sys, pathlib
from facelm.manifest import load_manifest
from facelm.geometry import landmark_square
from facelm.schemes import get_scheme
m = load_manifest(sys.argv[1]).split("val")
scale = get_scheme(m.scheme).face_box_scale
out = pathlib.Path(sys.argv[2])
imgs = sorted({str(s.image) for s in m.samples})
(out / "ytf_val_images.txt").write_text("\n".join(imgs) + "\n")
boxes = {}
for s, lm in zip(m.samples, m.landmarks):
    (cx, cy), side = landmark_square(lm, scale)  # the face square in the training convention
    boxes.setdefault(str(s.image), []).append([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
(out / "ytf_val_gt_squares.json").write_text(json.dumps(boxes))
PY
facelm predict "$S/ytf_val_images.txt" --models "$MODELS" -q > "$S/facelm_yunet.jsonl"
facelm predict "$S/ytf_val_images.txt" --models "$MODELS" --boxes "$S/ytf_val_gt_squares.json" -q \
  > "$S/facelm_gt_square.jsonl"
DLIB=()
if python -c "import dlib" 2>/dev/null; then
  python scripts/dlib_baseline.py "$Y" --split val --box gt-square --out "$S/dlib_gt_square.jsonl" > /dev/null
  python scripts/dlib_baseline.py "$Y" --split val --box dlib-detector --out "$S/dlib_detector.jsonl" > /dev/null
  DLIB=("$S/dlib_gt_square.jsonl" "$S/dlib_detector.jsonl")
else
  echo "dlib is not installed (pip install dlib-bin face-recognition-models): skipping its rows" >&2
fi
facelm evaluate --data "$Y" --split val "$S/facelm_gt_square.jsonl" "$S/facelm_yunet.jsonl" "${DLIB[@]}" -q \
  > "$S/ytf_tools.jsonl"

python - "$S" <<'PY'
import json, sys, pathlib
s = pathlib.Path(sys.argv[1])
def rows(f):
    return [json.loads(x) for x in (s / f).read_text().splitlines() if x.strip()]
def fmt(r, name):
    return (f"| {name} | {r['n']} | {100 * r['nme']:.2f} | {100 * r['median']:.2f} | {100 * r['fr@0.1']:.2f} | "
            f"{r['auc@0.1']:.4f} |")
head = "| model | faces | NME % | median % | FR@10% % | AUC@10% |\n|---|---|---|---|---|---|"
lines = ["## val split, ground-truth face boxes (inter-ocular NME)", "", head]
for f, label in [("val_all.jsonl", "all sources"), ("val_ytf68-train.jsonl", "ytf68 (pseudo ground truth)"),
                 ("val_utkface-dlib68.jsonl", "utkface (dlib-made labels)"),
                 ("val_infanface-train.jsonl", "infanface (infants)")]:
    one, two = rows(f)
    lines += [fmt(one, f"{label}: stage 1 (CNN-6)"), fmt(two, f"{label}: two-stage (CNN-6 + CNN-7)")]
lines += ["", "## ytf68 val faces: facelm predict vs dlib (predictions files scored by facelm evaluate)", "", head]
names = {"facelm_gt_square": "facelm, ground-truth square", "facelm_yunet": "facelm, YuNet detector",
         "dlib_gt_square": "dlib, ground-truth square", "dlib_detector": "dlib, its HOG detector"}
for r in rows("ytf_tools.jsonl"):
    lines.append(fmt(r, names.get(pathlib.Path(r["model"]).stem, r["model"])))
(s / "scores.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
