"""What the second reading of doubtful faces costs (``--rescue``, the default, against ``--no-rescue``): the
default pipeline (both stages, full TTA) on a list of photos, the two settings taking turns, best of
``--rounds``. Only faces whose quality after levelling is below ``RESCUE_QUALITY`` are read again, so the cost
depends on how many such faces the photos hold (counted and printed).

    python benchmarks/bench_rescue.py IMAGES [--limit 111] [--precision fp32|int8] [--rounds 2] [--models models]

IMAGES: anything ``facelm predict`` takes (a folder, a list file). Prints one JSON document on stdout: the CPU,
the faces, the doubtful faces, seconds with / without the second reading and their ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from facelm.cpu_features import cpu_name
from facelm.detectors import create_detector
from facelm.imageio import read_image
from facelm.runtime import Landmarker, load_models
from facelm.runtime.rescue import RESCUE_QUALITY
from facelm.sources import iter_sources


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("--limit", type=int, default=111)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", default=str(Path(__file__).resolve().parents[1] / "models"))
    args = ap.parse_args(argv)
    items = [it for it in iter_sources([str(args.images)]) if it.error is None][: args.limit]
    images = [it.image if it.image is not None else read_image(it.path) for it in items]
    if not images:
        ap.error(f"{args.images}: no images")
    pair = load_models(Path(args.models), threads=1, precision=args.precision)
    det = create_detector("auto", threads=1)
    runs = {r: Landmarker(pair, det, workers=1, tta="full", rescue=r) for r in (False, True)}
    best = {False: float("inf"), True: float("inf")}
    faces = doubtful = 0
    for _ in range(args.rounds):
        for r, lm in runs.items():
            t = time.perf_counter()
            results = [lm.predict_image(img) for img in images]
            best[r] = min(best[r], time.perf_counter() - t)
            if not r:  # the first readings: how many faces the second reading will look at again
                found = [f for res in results for f in res.faces]
                faces, doubtful = len(found), sum(f.quality < RESCUE_QUALITY for f in found)
    print(json.dumps({"cpu": cpu_name(), "images": len(images), "precision": args.precision, "faces": faces,
                      "doubtful_faces": doubtful, "rounds": args.rounds, "no_rescue_s": round(best[False], 3),
                      "rescue_s": round(best[True], 3), "ratio": round(best[True] / best[False], 3)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
