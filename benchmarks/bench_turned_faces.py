"""Faces the detector misses upright: what the turned look (``Landmarker(turn_search=True)``, the default) recovers.

Held-out photos of prepared sets (``--data``, their ``val`` split), each turned by 0, 45, ..., 315 degrees (canvas
grown to keep the whole photo; ``facelm.geometry.turn_image``), go through the default pipeline (both stages;
``--tta``, default flip). For each face of the ground truth the case counts as

* ``missed``: no predicted face whose points' centre lies within one inter-ocular distance of the truth's;
* ``failed``: found, but its NME (mapped to the set's scheme, normalised by the set's inter-ocular distance) is over
  10%;

once with the turned look and once without it. Without it an image whose upright look finds no face has no faces
at all, so only those images are predicted twice (the detector is deterministic: everything else is the same).

    python benchmarks/bench_turned_faces.py --data work/w300 --data work/infan [--images 40] [--models models]

Prints one JSON document (per set and angle: cases, missed and failed with and without the turned look, and how
many images the turned look was used on) on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from facelm.cpu_features import cpu_name
from facelm.detectors import create_detector
from facelm.geometry import turn_image
from facelm.imageio import read_image
from facelm.manifest import load_manifest
from facelm.runtime import Landmarker, load_models
from facelm.scheme_maps import get_map
from facelm.schemes import get_scheme

ANGLES = tuple(range(0, 360, 45))


def _norm(gt: np.ndarray, scheme: str) -> float:
    """The scheme's inter-ocular distance (the means of its two point groups) of one ground-truth shape."""
    a, b = get_scheme(scheme).normaliser_groups("inter-ocular")
    return float(np.linalg.norm(gt[list(a)].mean(0) - gt[list(b)].mean(0)))


def _score(faces, gt: np.ndarray, to_set, iod: float) -> str:
    """'ok', 'failed' or 'missed' for one ground-truth face among predicted ``faces``."""
    best = None
    for f in faces:
        p = to_set(np.asarray(f.landmarks))
        ok = np.isfinite(p).all(1)  # points of the set's scheme without an equivalent in the model's are NaN
        p, g = p[ok], gt[ok]
        err = float(np.linalg.norm(p - g, axis=1).mean())
        if np.linalg.norm(p.mean(0) - g.mean(0)) <= iod and (best is None or err < best):
            best = err
    if best is None:
        return "missed"
    return "failed" if best / iod > 0.1 else "ok"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", required=True, help="a prepared set (its val split is used)")
    ap.add_argument("--models", default="models")
    ap.add_argument("--images", type=int, default=40, help="at most this many val photos per set (name order)")
    ap.add_argument("--tta", default="flip", choices=["none", "flip", "full"])
    args = ap.parse_args(argv)
    models = load_models(Path(args.models))
    det = create_detector("auto")
    lm = Landmarker(models, det, tta=args.tta)
    out: dict = {"cpu": cpu_name(), "models": args.models, "tta": args.tta, "angles": list(ANGLES), "sets": {}}
    for data in args.data:
        m = load_manifest(Path(data)).split("val")
        by_image: dict[str, list[np.ndarray]] = {}
        for s in m.samples:
            by_image.setdefault(str((m.root / s.image).resolve()), []).append(np.asarray(s.landmarks, float))
        scheme = m.samples[0].scheme if m.samples else models.scheme.name
        to_set = (lambda p: p) if scheme == models.scheme.name else get_map(models.scheme.name, scheme).apply
        rows = {a: {"cases": 0, "turned_look_images": 0, "with": {"missed": 0, "failed": 0},
                    "without": {"missed": 0, "failed": 0}} for a in ANGLES}
        images = sorted(by_image)[: args.images]
        for n, path in enumerate(images, 1):
            img = read_image(path)
            for a in ANGLES:
                rot, mat = turn_image(img, a) if a else (img, np.array([[1.0, 0, 0], [0, 1.0, 0]]))
                upright = det.detect(rot)
                faces = lm.predict_image(rot, path).faces
                r = rows[a]
                r["turned_look_images"] += int(not upright and bool(faces))
                for gt in by_image[path]:
                    g = gt @ mat[:, :2].T + mat[:, 2]
                    iod = _norm(g, scheme)
                    r["cases"] += 1
                    got = _score(faces, g, to_set, iod)
                    without = got if upright else "missed"
                    for key, res in (("with", got), ("without", without)):
                        if res != "ok":
                            r[key][res] += 1
            print(f"{Path(data).name}: {n}/{len(images)} images", file=sys.stderr, flush=True)
        out["sets"][Path(data).name] = {str(a): v for a, v in rows.items()}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
