#!/usr/bin/env bash
# The GPU check of issue 17, for a short loan of a GPU machine (minutes; the repository plus what is carried to it
# within 64 MiB; no internet; a CUDA build of torch already installed).
#
#   scripts/gpu_check.sh [--carry DIR] [--data PREPARED_DIR] [--device cuda] [--batch-cnn6 256] [--batch-cnn7 128]
#                        [--steps-cnn6 1000] [--steps-cnn7 500] [--warmup-steps 50] [--compile] [--width 1]
#                        [--threads N] [--repeats 2]
#
# 1. checks that torch and numpy import (it never installs, upgrades or removes torch);
# 2. installs what facelm's training needs beyond them from DIR/wheels (pydantic), only where it is missing;
# 3. installs facelm from this checkout without its dependencies (pip --no-deps -e; PYTHONPATH when pip cannot);
# 4. unpacks the real-face subset DIR/subset.tar.xz (or takes --data, a prepared folder);
# 5. runs benchmarks/bench_train.py for CNN-6 and CNN-7: crops/s of the bare training step, crops/s of the whole
#    training loop with the augmentation on the device (and on the CPU with OpenCV when it is installed), their
#    ratio, the GPU utilisation and the peak GPU memory (each measured REPEATS times, interleaved; medians);
#    prints them as one JSON line on stdout.
#
# DIR (default work/gpu_check) is made here first, on a machine with the data and internet:
#   python scripts/make_gpu_subset.py --data work/w300 --faces 200 --out work/gpu_check
# It is licensed data: never commit it (work/ is ignored); carry it with the run.
# `--device cpu` runs the same check on a CPU (with small --steps/--batch/--width) to test the script.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$REPO/work/gpu_check"
DATA=""
DEVICE="cuda"
B6=256 B7=128 S6=1000 S7=500 WARM=50 WIDTH=1 COMPILE="" THREADS=0 REPEATS=2
PY="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --carry) CARRY="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --batch-cnn6) B6="$2"; shift 2 ;;
    --batch-cnn7) B7="$2"; shift 2 ;;
    --steps-cnn6) S6="$2"; shift 2 ;;
    --steps-cnn7) S7="$2"; shift 2 ;;
    --warmup-steps) WARM="$2"; shift 2 ;;
    --width) WIDTH="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    --compile) COMPILE="--compile"; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {print}' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
log() { echo "gpu_check: $*" >&2; }
START=$(date +%s)

# 1. torch and numpy: the machine's own
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then
  log "$PY cannot import torch and numpy; this check uses the machine's own torch"; exit 3
fi
log "$("$PY" -c "import torch as t; print('torch', t.__version__, 'cuda', t.cuda.is_available(),
                                        t.cuda.get_device_name(0) if t.cuda.is_available() else '')")"

# 2. pydantic (v2) from the carried wheels, only when missing
if ! "$PY" -c "import sys, pydantic; sys.exit(int(pydantic.VERSION.split('.')[0]) < 2)" 2>/dev/null; then
  [ -d "$CARRY/wheels" ] || { log "pydantic 2 is missing and $CARRY/wheels does not exist"; exit 3; }
  log "installing pydantic from $CARRY/wheels"
  "$PY" -m pip install -q --no-index --find-links "$CARRY/wheels" "pydantic>=2.5" >&2
fi

# 3. facelm from this checkout, without dependencies (the import is checked from /, off the checkout)
if ! (cd / && "$PY" -c "import facelm.train") 2>/dev/null; then
  if "$PY" -m pip install -q --no-deps --no-index --no-build-isolation -e "$REPO" >&2 2>/dev/null \
      && (cd / && "$PY" -c "import facelm.train") 2>/dev/null; then
    log "installed facelm (pip --no-deps -e $REPO)"
  else
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
    log "pip could not install facelm here: using PYTHONPATH=$REPO"
  fi
fi
(cd / && "$PY" -c "import facelm.train") || { log "facelm.train does not import"; exit 3; }

# 4. the data
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
if [ -z "$DATA" ]; then
  if [ ! -f "$CARRY/subset.tar.xz" ]; then
    log "no $CARRY/subset.tar.xz (make it with scripts/make_gpu_subset.py) and no --data"; exit 3
  fi
  "$PY" - "$CARRY/subset.tar.xz" "$TMP" <<'EOF'
import sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    try:
        tar.extractall(sys.argv[2], filter="data")
    except TypeError:  # Python without extraction filters
        tar.extractall(sys.argv[2])
EOF
  DATA="$TMP/subset"
fi
log "data: $DATA ($(wc -l < "$DATA/manifest.jsonl") faces)"

# 5. the measurements
PATHS="device"
if "$PY" -c "import cv2" 2>/dev/null; then
  PATHS="cpu device"
else
  log "no OpenCV here: the CPU augmentation path is not measured"
fi
"$PY" "$REPO/benchmarks/bench_train.py" "$DATA" --device "$DEVICE" --augment-on $PATHS \
  --batch-cnn6 "$B6" --batch-cnn7 "$B7" --steps-cnn6 "$S6" --steps-cnn7 "$S7" --warmup-steps "$WARM" \
  --width "$WIDTH" --threads "$THREADS" --repeats "$REPEATS" $COMPILE > "$TMP/result.json"
"$PY" - "$TMP/result.json" "$START" <<'EOF'
import json, sys, time
r = json.load(open(sys.argv[1]))
r["check"] = "scripts/gpu_check.sh"
r["seconds"] = round(time.time() - float(sys.argv[2]), 1)
print(json.dumps(r))
EOF
