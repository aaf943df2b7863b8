#!/usr/bin/env bash
# The model card's numbers (models/README.md) for the shipped models: see scripts/score_default.py.
#
#   scripts/score_default.sh [WORK] [MODELS]      (defaults: work models)
#
# Held-out val faces of every prepared set under WORK (as scripts/train_default.sh makes them): ground-truth boxes
# and end to end (`facelm predict` with YuNet; stage 1, the pair, without levelling, with flip TTA), MTFL by pose,
# and faces rotated over the full circle. Decides whether stage 2 runs by default (--set-default). The comparison
# with dlib-68 and MediaPipe on the same faces is scripts/compare_tools.py (its own venvs: compare_tools.md).
set -euo pipefail
python scripts/score_default.py --work "${1:-work}" --models "${2:-models}" --set-default
