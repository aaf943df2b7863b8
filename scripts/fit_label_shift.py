"""Measure the label shift of a prepared dataset's annotations: how far its points sit along the eye line from
where a flip-trained network reads them (``facelm export --label-shift``, models/README.md "Label shift").

    python scripts/fit_label_shift.py MODEL DATA [--split train] [--max-faces 2000] [--per-point]

MODEL is a stage-1 checkpoint (.pt) or exported stage-1 model (.onnx) of DATA's scheme that was trained with
horizontal flips and **never on DATA** (else it has partly memorised the faces' labels, offset included, and the
measure comes out too small); DATA is a folder from ``facelm prepare``. Each face is read from its ground-truth
square; its residual (label - prediction) is projected on the label's own eye line (image-left eye centre to
image-right eye centre) and divided by the eye-centre distance. The label shift is the median over faces of the
mean over points. Prints one JSON object on stdout (``label_shift``, its bootstrap 90% interval, the face count and
the residual across the eye line for reference); exit 2 on bad arguments.

A network trained with flips sees every label and its mirror image equally often, so an annotation habit that puts
points to one side (in 300-W: to the image right) averages out of what it learns; the shift across the eye line
does not, and is learnt (it is reported only to show that).

``--per-point`` adds ``per_point``: per point, the part of its habit such a network cannot learn, the
mirror-antisymmetric part of the per-point medians (point k's [along, across] residual and its mirror partner's,
mirrored: ``[(along_k + along_k') / 2, (across_k - across_k') / 2]``, k' = the scheme's flip partner), in the same
units. Its mean along the eye line is close to ``label_shift``; how far the points differ from it says whether one
number carries the habit (models/README.md, "Label shift": for 300-W it does).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--split", default="train", help="train (default), val, test or all")
    ap.add_argument("--max-faces", type=int, default=2000, help="at most this many faces (a seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-point", action="store_true", help="also the flip-unlearnable shift of each point")
    a = ap.parse_args(argv)
    if a.max_faces < 1:
        ap.error("--max-faces must be at least 1")

    import torch

    from facelm.checkpoint import load_model_from_checkpoint
    from facelm.errors import FacelmError
    from facelm.manifest import load_manifest
    from facelm.manifest_predict import predict_manifest
    from facelm.modelfile import check_meta_matches
    from facelm.schemes import get_scheme

    torch.set_num_threads(1)
    try:
        model, meta = load_model_from_checkpoint(a.model, torch.device("cpu"))
        m = load_manifest(a.data)
        check_meta_matches(meta, m, a.model)
        if a.split != "all":
            m = m.split(a.split)
    except FacelmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not len(m):
        print(f"error: {a.data}: no faces in split {a.split!r}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(a.seed)
    if len(m) > a.max_faces:
        keep = np.zeros(len(m), bool)
        keep[rng.choice(len(m), a.max_faces, replace=False)] = True
        m = m.select(keep)
    scheme = get_scheme(m.scheme)
    pred = predict_manifest(model, m, scheme, torch.device("cpu"))
    gt = m.landmarks.astype(np.float64)
    le, re = scheme.eye_centres(gt)
    d = re - le
    dist = np.linalg.norm(d, axis=1)
    u = d / dist[:, None]
    res = gt - pred  # label - prediction
    vis = ~np.isnan(res).any(-1)
    along = np.where(vis, np.einsum("nlc,nc->nl", np.nan_to_num(res), u), np.nan)
    across = np.where(vis, np.einsum("nlc,nc->nl", np.nan_to_num(res), np.stack([-u[:, 1], u[:, 0]], 1)), np.nan)
    ok = (dist > 0) & vis.any(1)
    along, across = along[ok] / dist[ok, None], across[ok] / dist[ok, None]  # in eye-centre distances
    x, y = np.nanmean(along, axis=1), np.nanmean(across, axis=1)
    boot = np.median(x[rng.integers(0, len(x), (1000, len(x)))], axis=1)
    out = {"label_shift": round(float(np.median(x)), 4),
           "interval_90": [round(float(v), 4) for v in np.percentile(boot, [5, 95])],
           "across_eye_line": round(float(np.median(y)), 4), "faces": int(ok.sum()),
           "unit": "eye-centre distance", "model": a.model, "data": a.data, "split": a.split}
    if a.per_point:
        pa, pc = np.nanmedian(along, axis=0), np.nanmedian(across, axis=0)
        perm = np.asarray(scheme.flip_perm)
        out["per_point"] = [[round(float(x), 4), round(float(y), 4)]
                            for x, y in zip((pa + pa[perm]) / 2, (pc - pc[perm]) / 2)]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
