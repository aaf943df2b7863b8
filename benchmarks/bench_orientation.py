"""The orientation search on shrunk patches (``facelm.runtime.pipeline.ORIENT_MAX_SIDE``) against full-size patches:
the whole default ``predict`` pipeline (YuNet, orientation search, levelling, flip TTA) over the same images, the
two settings alternating in each round (medians over the rounds), and how far their points lie apart.

    python benchmarks/bench_orientation.py IMAGES [--models models] [--precision fp32] [--rounds 3]

IMAGES is anything ``facelm predict`` takes. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from facelm.cpu_features import cpu_name
from facelm.detectors import create_detector
from facelm.runtime import Landmarker, load_models
from facelm.runtime import pipeline as PL
from facelm.sources import iter_sources


def run(pair, det, images: str, max_side: int) -> tuple[float, dict]:
    PL.ORIENT_MAX_SIDE = max_side
    lm = Landmarker(pair, det, tta="flip")
    t0 = time.perf_counter()
    out = {(r.name, i): f.landmarks for r in lm.run(iter_sources([images])) for i, f in enumerate(r.faces)}
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images")
    ap.add_argument("--models", default="models")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    pair = load_models(args.models, precision=args.precision)
    det = create_detector("auto")
    default = PL.ORIENT_MAX_SIDE
    settings = {"full-size patches": 1 << 30, f"shrunk to {default} px": default}
    secs: dict[str, list[float]] = {k: [] for k in settings}
    pts: dict[str, dict] = {}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, side in settings.items():
            dt, pts[name] = run(pair, det, args.images, side)
            secs[name].append(round(dt, 2))
        load.append(os.getloadavg()[0])
    a, b = pts.values()
    d = np.array([np.linalg.norm(a[k] - b[k], axis=1).mean() / np.linalg.norm(a[k][36] - a[k][45])
                  for k in a if k in b]) * 100
    full, shrunk = secs.values()
    out = {"cpu": cpu_name(), "precision": pair.precision, "faces": len(a), "seconds": secs,
           "load_avg_1m": [round(x, 2) for x in load],
           "speedup_median": round(statistics.median(x / y for x, y in zip(full, shrunk)), 3),
           "points_apart_pct_iod": {"median": round(float(np.median(d)), 3), "mean": round(float(d.mean()), 3),
                                    "above_5pct": int((d > 5).sum())}}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
