"""What the orientation search costs (``facelm.runtime.orientation``): the whole default ``predict`` pipeline (YuNet,
orientation search, levelling, flip TTA) over the same images with the search run for every face on full-size
patches ("always"), with the default skip of confident upright detections (``ORIENT_SKIP_SCORE``), and on patches
shrunk to 160 px (``ORIENT_MAX_SIDE``), the settings alternating in each round (medians over the rounds), and how
far each one's points lie from "always".

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
from facelm.runtime import orientation as OR
from facelm.sources import iter_sources

SETTINGS = {"always": {"ORIENT_SKIP_SCORE": None, "ORIENT_MAX_SIDE": None},
            f"skip at score >= {OR.ORIENT_SKIP_SCORE} (default)": {"ORIENT_SKIP_SCORE": OR.ORIENT_SKIP_SCORE,
                                                                    "ORIENT_MAX_SIDE": OR.ORIENT_MAX_SIDE},
            "shrunk to 160 px": {"ORIENT_SKIP_SCORE": None, "ORIENT_MAX_SIDE": 160}}


def run(pair, det, images: str, setting: dict) -> tuple[float, dict]:
    for k, v in setting.items():
        setattr(OR, k, v)
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
    secs: dict[str, list[float]] = {k: [] for k in SETTINGS}
    pts: dict[str, dict] = {}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, setting in SETTINGS.items():
            dt, pts[name] = run(pair, det, args.images, setting)
            secs[name].append(round(dt, 2))
        load.append(os.getloadavg()[0])
    ref = pts["always"]
    out = {"cpu": cpu_name(), "precision": pair.precision, "faces": len(ref), "seconds": secs,
           "load_avg_1m": [round(x, 2) for x in load], "settings": {}}
    for name in SETTINGS:
        b = pts[name]
        d = np.array([np.linalg.norm(ref[k] - b[k], axis=1).mean() / np.linalg.norm(ref[k][36] - ref[k][45])
                      for k in ref if k in b]) * 100
        out["settings"][name] = {
            "seconds_median": statistics.median(secs[name]),
            "speedup_vs_always_median": round(statistics.median(x / y for x, y in zip(secs["always"], secs[name])), 3),
            "points_apart_from_always_pct_iod": {"median": round(float(np.median(d)), 3),
                                                 "mean": round(float(d.mean()), 3), "above_5pct": int((d > 5).sum())}}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
