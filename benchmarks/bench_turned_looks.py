"""Turned photos with and without the detector's extra looks (smaller sizes, a border for a face at the edge).

The first 40 held-out w300 val photos, each turned by 45, 90, ..., 315 degrees (canvas grown to keep the whole
photo), the default pipeline (both stages, flip TTA) once with the extra looks (the default) and once with the
detector's first look only (``min_retry_side = 0``). A case fails when the face is missed or its points lie more
than 10% of the inter-ocular distance (mean) from the upright prediction turned the same way.

    python benchmarks/bench_turned_looks.py [--data work/w300] [--models models] [--images 40]

Prints one JSON document (failures per angle, per setting) on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facelm.cpu_features import cpu_name
from facelm.detectors import create_detector
from facelm.detectors.base import MIN_RETRY_SIDE
from facelm.geometry import turn_image
from facelm.imageio import read_image
from facelm.manifest import load_manifest
from facelm.runtime import Landmarker, load_models


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="work/w300")
    ap.add_argument("--models", default="models")
    ap.add_argument("--images", type=int, default=40)
    args = ap.parse_args(argv)
    m = load_manifest(Path(args.data)).split("val")
    imgs = sorted({str((m.root / s.image).resolve()) for s in m.samples})[: args.images]
    det = create_detector("auto")
    lm = Landmarker(load_models(Path(args.models)), det)
    settings = {"extra looks (default)": MIN_RETRY_SIDE, "first look only": 0}
    fails = {k: {} for k in settings}
    for path in imgs:
        img = read_image(path)
        det.min_retry_side = MIN_RETRY_SIDE
        base = lm.predict_image(img, path).faces
        if not base:
            continue
        f0 = max(base, key=lambda f: f.score)
        iod = float(np.linalg.norm(f0.landmarks[36] - f0.landmarks[45]))
        for a in range(45, 360, 45):
            rot, mat = turn_image(img, a)
            expect = f0.landmarks @ mat[:, :2].T + mat[:, 2]
            for name, mrs in settings.items():
                det.min_retry_side = mrs
                faces = lm.predict_image(rot, path).faces
                bad = True
                if faces:
                    f = min(faces, key=lambda g: np.linalg.norm(g.landmarks.mean(0) - expect.mean(0)))
                    bad = float(np.linalg.norm(f.landmarks - expect, axis=1).mean() / iod) > 0.1
                fails[name][str(a)] = fails[name].get(str(a), 0) + int(bad)
    det.min_retry_side = MIN_RETRY_SIDE
    out = {"cpu": cpu_name(), "images": len(imgs), "failures": fails,
           "total": {k: sum(v.values()) for k, v in fails.items()}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
