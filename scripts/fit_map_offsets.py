"""Fit a scheme map's offsets (facelm/scheme_maps.py, "Offsets") to a model pair's reading of a prepared dataset.

    python scripts/fit_map_offsets.py DATA [--models models] [--split train] [--max-faces 3000]

Runs the exported pair (``cnn6.onnx`` + ``cnn6r.onnx`` in --models, fp32, from ground-truth squares, label shift
included, as ``facelm evaluate`` runs it) on DATA's faces, maps each prediction to DATA's scheme through the
point means of the registered map (no offsets), and takes, per point, the median of (label - mapped prediction)
in the prediction's own eye frame: along the eye line (image-left to image-right eye centre) and across it (down
the face), in eye-centre distances. Prints one JSON object: ``offsets`` (one ``[along, across]`` per point of the
data's scheme, ``null`` for unmapped points; paste into the map or a map file), the NME of the split before and
after, and the face count. Fit on a train split and judge on val: the fit is a calibration of 2 numbers per point.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--models", default="models", help="folder with cnn6.onnx and cnn6r.onnx (default: models)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--max-faces", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from dataclasses import replace

    from facelm.crops import cache_landmarks
    from facelm.errors import FacelmError
    from facelm.manifest import load_manifest
    from facelm.manifest_predict import load_onnx_model, onnx_predict_manifest
    from facelm.modelfile import label_shift, meta_scheme, shift_landmarks
    from facelm.scheme_maps import get_map

    try:
        m = load_manifest(a.data)
        if a.split != "all":
            m = m.split(a.split)
        paths = [Path(a.models) / "cnn6.onnx", Path(a.models) / "cnn6r.onnx"]
        sessions, metas = zip(*(load_onnx_model(p, threads=1) for p in paths))
    except FacelmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not len(m):
        print(f"error: {a.data}: no faces in split {a.split!r}", file=sys.stderr)
        return 2
    if len(m) > a.max_faces:
        keep = np.zeros(len(m), bool)
        keep[np.random.default_rng(a.seed).choice(len(m), a.max_faces, replace=False)] = True
        m = m.select(keep)
    scheme = meta_scheme(metas[1])
    # the pair, as facelm evaluate runs it on data of its own scheme (here the data may be in another one: the
    # stage-1 crops come from the data's face squares, the stage-2 crops from the stage-1 shapes)
    p1 = onnx_predict_manifest(sessions[0], metas[0], m, same_scheme=False)
    pred = onnx_predict_manifest(sessions[1], metas[1], m, cache_landmarks(m.cache_matrix, p1), same_scheme=False)
    pred = shift_landmarks(pred, label_shift(metas[1]), scheme)

    smap = get_map(scheme.name, m.scheme)
    plain = replace(smap, offsets=None)
    mapped = plain.apply(pred)  # (N, K, 2), NaN where unmapped
    le, re = scheme.eye_centres(pred)
    u = re - le
    d2 = np.sum(u * u, axis=1)
    v = np.stack([-u[:, 1], u[:, 0]], 1)
    res = m.landmarks.astype(np.float64) - mapped
    along = np.einsum("nkc,nc->nk", res, u) / d2[:, None]
    across = np.einsum("nkc,nc->nk", res, v) / d2[:, None]
    offsets = []
    for k in range(res.shape[1]):
        ok = ~np.isnan(along[:, k])
        offsets.append([round(float(np.median(along[ok, k])), 4), round(float(np.median(across[ok, k])), 4)]
                       if smap.mapped[k] and ok.any() else None)
    fitted = replace(smap, offsets=tuple((0.0, 0.0) if o is None else tuple(o) for o in offsets))
    out = {"offsets": offsets, "faces": len(m), "data": a.data, "split": a.split, "models": a.models,
           "nme_before": _nme(plain, pred, m), "nme_after": _nme(fitted, pred, m),
           "unit": "eye-centre distance of the mapped 68-point shape; [along the eye line, across it]"}
    print(json.dumps(out))
    return 0


def _nme(smap, pred, m) -> float:
    """Mean NME (%) over the mapped points, the data scheme's default normaliser (as facelm evaluate scores)."""
    from facelm.manifest_predict import validation_nme
    from facelm.schemes import get_scheme

    p = smap.apply(pred)
    nme = validation_nme(p, m, get_scheme(m.scheme), np.broadcast_to(smap.mapped, p.shape[:2]))
    return round(100 * float(np.nanmean(nme)), 3)


if __name__ == "__main__":
    sys.exit(main())
