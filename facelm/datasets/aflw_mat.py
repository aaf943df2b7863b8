"""AFLW-Full: ``AFLWinfo_release.mat`` (Zhu et al., CCL, CVPR 2016), the 19-point AFLW protocol of the Wing paper.

Published layout (MATLAB v5; v7.3 is read too):

* ``data``      N x 38: x1..x19 then y1..y19, **1-based** (MATLAB) -> the reader subtracts 1.
* ``bbox``      N x 4: ``x1 x2 y1 y2`` (left, right, top, bottom; 1-based) -> box ``[x1-1, y1-1, x2-1, y2-1]``,
  ``box_source="aflw-bbox"``. ``attrs["box_size"] = max(w, h)`` of that box and ``attrs["box_wh"] = [w, h]``.
  AFLW-Full's NME normaliser is the width of the given square face box; for a square box ``max(w, h)``, the
  width and ``sqrt(w * h)`` (what SAN computes) agree. ``max(w, h)`` is what mmpose uses for a non-square box
  (``bbox_size`` normaliser); HRNet's AFLW CSV stores a ``box_size`` equal to ``scale * 200``.
* ``mask_new``  N x 19 visibility (1 = visible) -> ``visible``.
* ``nameList``  N x 1 cell of image paths relative to AFLW's ``flickr/`` folder, e.g. ``3/image00035.jpg``.
* ``ra``        1 x N random permutation of 1..N: faces ``ra[0:20000]`` are **train**, the rest (4386) **test**.

N = 24386 in the real file. For a smaller file (tests) the first ``n_train`` (20000) of ``ra`` are still train,
so every face of a file with N <= 20000 is train; :func:`read_aflw_mat` takes ``n_train`` to test the rule.

Images: ``nameList`` entries are looked up under ``flickr/``, ``data/flickr/``, ``images/`` or directly in the
.mat's folder and in its parent folder (AFLW unpacks to ``aflw/data/flickr/{0,2,3}/``). A face whose image is
not found gives a ReadIssue. Record numbers in messages are MATLAB's (1-based rows).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, Reader, ReaderResult, register_reader
from facelm.datasets._common import ImageResolver, SchemeResolver, ancestors, issue, list_files
from facelm.datasets._mat import h5_array, h5_cell, h5_string, is_v73, load_v5, mat_variables, v5_cell, v5_str

__all__ = ["read_aflw_mat", "sniff_aflw_mat", "AFLW_MAT_READER", "AFLW_FULL_NUM_TRAIN"]

AFLW_FULL_NUM_TRAIN = 20000
_VARS = ("data", "bbox", "nameList")


def _load(path: Path) -> dict:
    if is_v73(path):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                missing = [k for k in _VARS if k not in f]
                if missing:
                    raise ValueError(f"{path}: not an AFLWinfo file (missing {', '.join(missing)})")
                out = {k: h5_array(f, k) for k in ("data", "bbox", "mask_new", "ra") if k in f}
                out["names"] = [h5_string(ds) for ds in h5_cell(f, "nameList")]
                return out
        except OSError as e:
            raise ValueError(f"{path}: cannot read MATLAB v7.3 file ({e})") from None
    m = load_v5(path, ["data", "bbox", "mask_new", "nameList", "ra"])
    missing = [k for k in _VARS if k not in m]
    if missing:
        raise ValueError(f"{path}: not an AFLWinfo file (missing {', '.join(missing)})")
    out = {k: np.asarray(m[k]) for k in ("data", "bbox", "mask_new", "ra") if k in m}
    out["names"] = [v5_str(x) for x in v5_cell(m["nameList"])]
    return out


def _mat_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for f in list_files(path, (".mat",)):
            if sniff_aflw_mat(f):
                return f
        raise ValueError(f"{path}: no AFLWinfo .mat file (variables data, bbox, nameList, ra) in this folder")
    raise ValueError(f"{path}: no such file or folder")


def read_aflw_mat(path: Path, scheme: str | None = None, *, n_train: int = AFLW_FULL_NUM_TRAIN) -> ReaderResult:
    """Read ``AFLWinfo_release.mat`` (or the one in a folder); see the module doc."""
    mat = Path(os.path.abspath(_mat_file(Path(path))))
    d = _load(mat)
    data = np.asarray(d["data"], dtype=np.float64)
    n = data.shape[0] if data.ndim == 2 else 0
    if data.ndim != 2 or data.shape[1] != 38:
        raise ValueError(f"{mat}: 'data' is {data.shape}, expected N x 38 (x1..x19, y1..y19)")
    bbox = np.asarray(d["bbox"], dtype=np.float64)
    if bbox.shape != (n, 4):
        raise ValueError(f"{mat}: 'bbox' is {bbox.shape}, expected {n} x 4")
    names = d["names"]
    if len(names) != n:
        raise ValueError(f"{mat}: 'nameList' has {len(names)} entries for {n} faces")
    mask = d.get("mask_new")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (n, 19):
            raise ValueError(f"{mat}: 'mask_new' is {mask.shape}, expected {n} x 19")
    split = [None] * n
    ra = d.get("ra")
    if ra is not None:
        order = np.asarray(ra).reshape(-1).astype(np.int64) - 1
        if sorted(order.tolist()) != list(range(n)):
            raise ValueError(f"{mat}: 'ra' is not a permutation of 1..{n}")
        split = ["test"] * n
        for i in order[:n_train]:
            split[int(i)] = "train"
    resolver = SchemeResolver(scheme, {19: "aflw19"})
    sname, why = resolver(19)
    if sname is None:
        raise ValueError(f"{mat}: AFLW-Full has 19 points; {why}")
    images = ImageResolver(ancestors(mat.parent, 1), ("flickr", "data/flickr", "", "images"))

    lms = np.stack([data[:, :19], data[:, 19:]], axis=2) - 1.0  # (N, 19, 2), 0-based
    finite = np.isfinite(lms).all(axis=(1, 2))
    box_ok = np.isfinite(bbox).all(axis=1) & (bbox[:, 1] > bbox[:, 0]) & (bbox[:, 3] > bbox[:, 2])
    boxes = np.stack([bbox[:, 0], bbox[:, 2], bbox[:, 1], bbox[:, 3]], axis=1) - 1.0  # x1 y1 x2 y2, 0-based
    wh = np.stack([bbox[:, 1] - bbox[:, 0], bbox[:, 3] - bbox[:, 2]], axis=1)
    sizes = wh.max(axis=1)
    vis = mask > 0 if mask is not None else None

    def gen() -> ReaderResult:
        for i in range(n):
            src = f"{mat}:{i + 1}"
            where = f"{mat.name}: record {i + 1}"
            name = names[i]
            if not name:
                yield issue(src, f"{where}: empty image name in nameList")
                continue
            if not finite[i]:
                yield issue(src, f"{where}: NaN or infinite landmark coordinates")
                continue
            if not box_ok[i]:
                yield issue(src, f"{where}: bad bbox {bbox[i].tolist()} (expected x1 x2 y1 y2)")
                continue
            img = images.resolve(name)
            if img is None:
                yield issue(src, f"{where}: image not found: {name} (looked under {images.where()})")
                continue
            yield RawFace(image=img, landmarks=lms[i], scheme=sname, box=boxes[i], box_source="aflw-bbox",
                          visible=vis[i] if vis is not None else None, split=split[i], subset=[], source=src,
                          attrs={"box_size": float(sizes[i]), "box_wh": [float(wh[i, 0]), float(wh[i, 1])],
                                 "record": i + 1})

    return gen()


def sniff_aflw_mat(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(sniff_aflw_mat(f) for f in list_files(path, (".mat",)))
    if path.suffix.lower() != ".mat":
        return False
    v = mat_variables(path)
    return all(k in v for k in _VARS) and "ra" in v


AFLW_MAT_READER = register_reader(Reader(
    name="aflw-mat",
    description="AFLW-Full AFLWinfo_release.mat (19 points, 1-based; ra gives the 20000/4386 split)",
    read=read_aflw_mat,
    sniff=sniff_aflw_mat,
    default_scheme="aflw19",
))
