"""How long ``facelm predict`` takes on one photo, start to end (what a shell loop calling it per file pays), next to
the bare start of the libraries it cannot do without (Python, numpy, OpenCV, onnxruntime) measured in the same run,
and which heavy optional packages the run imported (``onnx``, ``torch``: predict needs neither).

    python benchmarks/bench_startup.py [--image examples/astronaut.jpg] [--rounds 5] [--models models]

Each round runs, one after the other, a fresh ``python -c "import numpy, cv2, onnxruntime"`` and a fresh ``python
-m facelm predict IMAGE -q``; medians are reported. Bytecode caching follows the environment
(``PYTHONDONTWRITEBYTECODE`` set means every module is compiled on every start: slower, as some containers are).
Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from facelm.cpu_features import cpu_name

REPO = Path(__file__).resolve().parents[1]
LIBS = "import numpy, cv2, onnxruntime"
#: heavy packages ``facelm predict`` must not import (each costs about a second)
HEAVY = ("onnx", "torch")


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - t


def imported_heavy(image: str, models: str) -> list[str]:
    """The packages of HEAVY that one ``facelm predict`` run imports."""
    probe = ("import runpy, sys; sys.argv = ['facelm', 'predict', %r, '--models', %r, '-q', '-o', '/dev/null']\n"
             "try:\n    runpy.run_module('facelm', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print(','.join(m for m in %r if m in sys.modules), file=sys.stderr)") % (image, models, HEAVY)
    err = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO).stderr
    return [m for m in err.strip().splitlines()[-1].split(",") if m] if err.strip() else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="examples/astronaut.jpg")
    ap.add_argument("--models", default="models")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    libs, predict = [], []
    for _ in range(a.rounds):
        libs.append(timed([sys.executable, "-c", LIBS]))
        predict.append(timed([sys.executable, "-m", "facelm", "predict", a.image, "--models", a.models, "-q"]))
    m_libs, m_pred = statistics.median(libs), statistics.median(predict)
    json.dump({"cpu": cpu_name(), "image": a.image, "rounds": a.rounds, "libraries_s": round(m_libs, 3),
               "predict_one_photo_s": round(m_pred, 3), "predict_over_libraries": round(m_pred / m_libs, 2),
               "heavy_imports": imported_heavy(a.image, a.models)}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
