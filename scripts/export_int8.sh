#!/usr/bin/env bash
# The int8 copies of the shipped stage models (models/README.md, "int8"), reproducibly from the shipped float files:
#
#   scripts/export_int8.sh [WORK] [MODELS] [OUT]     (defaults: work models WORK/scores-int8)
#
# 1. `facelm export MODELS/NAME.onnx --quantize int8` for each float stage model (cnn6 and cnn6r or cnn7): the fp16-stored weights are cast back to float32, then static
#    QDQ quantisation (per-channel full 8-bit weights, uint8 activations, Percentile ranges; 7-bit weights cost the
#    deeper networks 1.9% NME; full 8-bit ones are exact on VNNI / AMX / ARM, and x86 CPUs without VNNI run them with
#    7-bit activations, facelm.ort) calibrated on 1,024 crops of
#    the train
#    split of WORK/w300 (300-W AFW + HELEN, human labels); checked on its held-out val split (ground-truth crops):
#    the NME may rise by at most 1% relative, with this CPU's int8 kernels and with the reference int8 arithmetic
#    (what VNNI / AMX / ARM dot-product kernels compute). The file is written only if it passes; the numbers go into
#    its metadata (quantization.nme_check).
# 2. scripts/score_int8.py --record: the default `facelm predict` at --precision fp32 and int8 on the val images of
#    WORK/w300 and WORK/mtfl, scored by `facelm evaluate`; at most 1% relative NME change, recorded in the metadata
#    (quantization.end_to_end).
# A model that fails either check has its int8 file removed (predict then runs fp32): do not ship it.
set -euo pipefail
WORK="${1:-work}"
MODELS="${2:-models}"
OUT="${3:-$WORK/scores-int8}"
mkdir -p "$OUT"
STEMS=()
for f in "$MODELS"/*.onnx; do
    case "$f" in *.int8.onnx) continue ;; esac
    STEMS+=("$(basename "$f" .onnx)")
done
for m in "${STEMS[@]}"; do
    if ! facelm export "$MODELS/$m.onnx" --out "$MODELS/$m.int8.onnx" --quantize int8 --calib "$WORK/w300" \
            --calib-faces 1024 --calib-method percentile --full-range --seed 0 --max-nme-increase 0.01 --threads 1 -q \
            > "$OUT/export-$m.json"; then
        rm -f "$MODELS/$m.int8.onnx"
        echo "export_int8: $m failed the int8 check ($OUT/export-$m.json); $MODELS/$m.int8.onnx removed" >&2
        exit 1
    fi
done
if ! python scripts/score_int8.py --work "$WORK" --models "$MODELS" --out "$OUT" --record --max-increase 0.01; then
    for m in "${STEMS[@]}"; do rm -f "$MODELS/$m.int8.onnx"; done
    echo "export_int8: the end-to-end check failed ($OUT/scores.json); the int8 files were removed" >&2
    exit 1
fi
ls -l "$MODELS"/*.onnx >&2
