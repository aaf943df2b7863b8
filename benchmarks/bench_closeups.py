"""Close-ups and face crops: faces that fill much of a frame, with and without the detector's extra looks (smaller
sizes, and a border around a face at the edge: ``facelm.detectors.base.detect_with_retries``).

For each held-out face of a prepared dataset, the photo is resampled so that the face's landmarks span ``--fill``
of a ``--side`` px square frame (centred on the face, borders replicated), and the default ``predict`` pipeline
(YuNet, orientation, levelling, both stages, flip TTA) runs on it once with the extra looks (the default) and once
with the first look only (``min_retry_side = 0``). ``--side 1024 --fill 0.65`` is a close-up, ``--side 256 --fill
0.95`` a face crop. The face nearest the ground truth is scored (inter-ocular NME; a
missed face counts as a failure). The same two settings then run on the original photos: seconds (medians over
``--rounds``, alternating) and how far the points move.

    python benchmarks/bench_closeups.py --data work/w300 [--split val] [--side 1024] [--fill 0.5 0.65 0.8]

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import cv2
import numpy as np

from facelm.cpu_features import cpu_name
from facelm.detectors import create_detector
from facelm.detectors.base import MIN_RETRY_SIDE
from facelm.imageio import read_image
from facelm.manifest import load_manifest
from facelm.runtime import Landmarker, load_models
from facelm.schemes import get_scheme


def close_up(img: np.ndarray, pts: np.ndarray, side: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = pts.min(0), pts.max(0)
    s = side * fill / max((hi - lo).max(), 1.0)
    c = (lo + hi) / 2
    m = np.array([[s, 0, side / 2 - c[0] * s], [0, s, side / 2 - c[1] * s]])
    out = cv2.warpAffine(img, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, pts * s + m[:, 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared dataset folder (facelm prepare)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--models", default="models")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--fill", type=float, nargs="+", default=[0.5, 0.65, 0.8])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args(argv)

    man = load_manifest(args.data).split(args.split)
    if not len(man):
        sys.exit(f"error: {args.data}: no faces in split {args.split!r}")
    n = min(len(man), args.limit) if args.limit else len(man)
    faces = [(str(man.image_path(i)), man.landmarks[i]) for i in range(n)]
    sch = get_scheme(man.scheme)
    (a, b) = sch.normalisers["inter-ocular"]
    pair = load_models(args.models, precision=args.precision)
    det = create_detector("auto")
    lm = Landmarker(pair, det, tta="flip")
    settings = {"extra looks (default)": MIN_RETRY_SIDE, "first look only": 0}

    out: dict = {"cpu": cpu_name(), "data": args.data, "split": args.split, "faces": len(faces),
                 "side": args.side, "precision": args.precision, "close_ups": {}}
    images = {p: read_image(p) for p, _ in faces}
    for fill in args.fill:
        res = {}
        for name, mrs in settings.items():
            det.min_retry_side = mrs
            errs = []
            for path, lms in faces:
                img, gt = close_up(images[path], np.asarray(lms, float), args.side, fill)
                found = lm.predict_image(img).faces
                if not found:
                    errs.append(np.inf)
                    continue
                f = min(found, key=lambda g: np.linalg.norm(g.landmarks.mean(0) - gt.mean(0)))
                iod = np.linalg.norm(gt[list(a)].mean(0) - gt[list(b)].mean(0))
                errs.append(float(np.linalg.norm(f.landmarks - gt, axis=1).mean() / iod))
            e = np.array(errs)
            ok = np.isfinite(e)
            res[name] = {"found": int(ok.sum()), "nme_found": round(float(e[ok].mean()), 4) if ok.any() else None,
                         "median": round(float(np.median(e)), 4), "fr@0.1": round(float((e > 0.1).mean()), 4)}
        out["close_ups"][str(fill)] = res
        print(f"[closeups] fill {fill}: {json.dumps(res)}", file=sys.stderr)

    # the original photos: time and how far the points move
    secs: dict[str, list[float]] = {k: [] for k in settings}
    pts: dict[str, dict] = {}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, mrs in settings.items():
            det.min_retry_side = mrs
            t0 = time.perf_counter()
            pts[name] = {(k, i): f.landmarks for k, img in images.items()
                         for i, f in enumerate(lm.predict_image(img).faces)}
            secs[name].append(time.perf_counter() - t0)
    load.append(os.getloadavg()[0])
    base, new = pts["first look only"], pts["extra looks (default)"]
    moved = [float(np.abs(new[k] - base[k]).max()) for k in base if k in new]
    out["photos"] = {"images": len(images), "seconds": {k: round(statistics.median(v), 2) for k, v in secs.items()},
                     "ratio_default_over_first_look": round(statistics.median(secs["extra looks (default)"])
                                                       / statistics.median(secs["first look only"]), 3),
                     "faces": {k: len(v) for k, v in pts.items()},
                     "faces_moved_over_1px": int(sum(m > 1.0 for m in moved)), "load": load}
    det.min_retry_side = MIN_RETRY_SIDE
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
