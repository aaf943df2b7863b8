"""Where a 68-point predictor's error lies: per region, and on the jaw line along the contour versus across it.

    python scripts/contour_errors.py --data work/w300 --split val PRED.jsonl [PRED2.jsonl ...]

PRED: a predictions file as `facelm predict` writes it (or any file `facelm evaluate` reads), 300w68 points. Faces
are matched to the prepared set's ground truth as `facelm evaluate` matches them; faces a file misses are left out
(so compare files over the faces all of them found). Prints one JSON object per file on stdout; errors are in % of
the normaliser (`--normaliser`, default the scheme's inter-ocular distance):

- ``regions``: mean point error of jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67;
- ``jaw``: the jaw points' error split into the component **along** the ground-truth contour (the direction from
  the point's previous to its next neighbour) and the one **across** it (positive: outwards, away from the nose),
  as mean absolute values, with each point's mean signed value (a systematic habit) and the same means by head turn
  (|nose tip - eye midpoint| along the eye line, in eye-corner distances: < 0.1 frontal, 0.1-0.25, >= 0.25).

Along-contour error on the jaw is mostly where annotators put points on an edge with no landmark on it (the
300-W convention spaces them evenly between the ears); across-contour error is the edge found or missed.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

REGIONS = {"jaw": (0, 17), "brows": (17, 27), "nose": (27, 36), "eyes": (36, 48), "mouth": (48, 68)}
TURN_BINS = ((0.0, 0.1), (0.1, 0.25), (0.25, np.inf))


def jaw_components(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Along- and across-contour error ``(N, 17)`` of the jaw points, in units of ``norm`` (N,).

    The tangent at point i is the unit vector from ground-truth point i-1 to i+1 (one-sided at the ends); the
    normal points away from the nose (mean of points 27-35), so a positive across error is outside the face."""
    g, p = np.asarray(gt, np.float64)[:, :17], np.asarray(pred, np.float64)[:, :17]
    prev = np.concatenate([g[:, :1], g[:, :-1]], 1)
    nxt = np.concatenate([g[:, 1:], g[:, -1:]], 1)
    t = nxt - prev
    t /= np.linalg.norm(t, axis=-1, keepdims=True)
    n = np.stack([-t[..., 1], t[..., 0]], -1)
    nose = np.asarray(gt, np.float64)[:, 27:36].mean(1, keepdims=True)
    n *= np.where(((g - nose) * n).sum(-1, keepdims=True) < 0, -1.0, 1.0)
    e = (p - g) / np.asarray(norm, np.float64)[:, None, None]
    return (e * t).sum(-1), (e * n).sum(-1)


def head_turn(gt: np.ndarray) -> np.ndarray:
    """|nose tip (30) - outer-eye-corner midpoint| along the eye line, in outer-eye-corner distances (N,)."""
    g = np.asarray(gt, np.float64)
    v = g[:, 45] - g[:, 36]
    d = np.linalg.norm(v, axis=-1)
    return np.abs(((g[:, 30] - (g[:, 36] + g[:, 45]) / 2) * v).sum(-1)) / d ** 2


def summarise(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray) -> dict:
    """The report of one predictions file on matched faces (pred, gt: (N, 68, 2); norm: (N,))."""
    err = np.linalg.norm(pred - gt, axis=-1) / norm[:, None] * 100
    along, across = jaw_components(pred, gt, norm)
    along, across = along * 100, across * 100
    turn = head_turn(gt)

    def r(x):
        return round(float(x), 2)

    out = {"faces": len(gt), "nme": r(err.mean()),
           "regions": {k: r(err[:, a:b].mean()) for k, (a, b) in REGIONS.items()},
           "jaw": {"along": r(np.abs(along).mean()), "across": r(np.abs(across).mean()),
                   "along_mean_per_point": [r(x) for x in along.mean(0)],
                   "across_mean_per_point": [r(x) for x in across.mean(0)], "by_turn": []}}
    for lo, hi in TURN_BINS:
        k = (turn >= lo) & (turn < hi)
        if k.any():
            out["jaw"]["by_turn"].append({"turn": [lo, None if np.isinf(hi) else hi], "faces": int(k.sum()),
                                          "along": r(np.abs(along[k]).mean()), "across": r(np.abs(across[k]).mean())})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("predictions", nargs="+", help="predictions files (300w68)")
    ap.add_argument("--data", required=True, help="prepared 300w68 dataset (facelm prepare)")
    ap.add_argument("--split", default="val", help="split to score, or all (default val)")
    ap.add_argument("--normaliser", default="inter-ocular", help="a normaliser of the scheme (default inter-ocular)")
    a = ap.parse_args(argv)
    from facelm.errors import FacelmError
    from facelm.evaluate import face_normaliser
    from facelm.manifest import load_manifest
    from facelm.predictions import match_predictions, read_predictions

    try:
        full = load_manifest(a.data)
        if full.scheme != "300w68":
            ap.error(f"--data {a.data}: scheme {full.scheme!r}, this report needs 300w68 faces")
        m = full if a.split == "all" else full.split(a.split)
        if len(m) == 0:
            ap.error(f"--split {a.split}: no faces in {a.data}")
        norm, _ = face_normaliser(m, a.normaliser)
        for path in a.predictions:
            pred, missing, _ = match_predictions(read_predictions(path), m, full)
            ok = ~missing & np.isfinite(pred).all((1, 2))
            rep = summarise(pred[ok], m.landmarks[ok], norm[ok])
            print(json.dumps({"predictions": path, "missing": int((~ok).sum()), **rep}), flush=True)
    except FacelmError as e:
        print(f"contour_errors: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
