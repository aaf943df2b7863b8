"""From detector boxes to the face squares the landmark models were trained on, fitted on annotated images.

Models are trained on crops around the *face square* of the ground-truth landmarks (``landmark_square(lm,
scheme.face_box_scale)``: centred on the landmark bounding box, side ``face_box_scale x max(w, h)``). A face
detector's box is a different rectangle (YuNet's is taller than the landmarks, includes the forehead, and sits a
little higher). The *box map* converts one into the other::

    centre = box centre + (cx * w, cy * h)        w, h: the detector box's width and height
    side   = side_k * max(w, h)

Fitting (:func:`fit_box_map`): run the detector on a prepared manifest's images, match every ground-truth face to
the detection with the highest IoU with its face square (IoU >= ``min_iou``; unmatched faces are counted, not
used), and take the **medians** of ``(gt_cx - box_cx) / w``, ``(gt_cy - box_cy) / h`` and
``gt_side / max(w, h)`` over the matched faces. Medians rather than least squares because a few wrong matches or
odd annotations should not move the map. The residual spread (median absolute centre and side error after the
map, as a fraction of the face side) is stored with it.

The map lives in the stage-1 ONNX metadata: ``meta["detector_box_maps"][detector_name] = {...}``
(:func:`write_box_map`); ``predict`` uses the entry of the detector it runs. A single map under
``meta["detector_box_map"]`` (with its ``"detector"`` name) is read too. A model without a map for the detector
falls back to :data:`BUILTIN_BOX_MAPS` (YuNet and yuface, fitted on 300 ``ytf68-train`` faces with the 300W-68
face square; about right for the other built-in schemes, whose face squares cover a similar area), and any other
detector to the identity square: centre = box centre, side = max(w, h).

Measured on those 300 faces (YuNet): the fitted map gives a median centre error of 0.037 and a median side error
of 0.044 face sides (mean IoU with the ground-truth squares 0.86); the identity square 0.16, 0.23 (IoU 0.62).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facelm.detectors.base import FaceDetector, box_iou
from facelm.errors import DataError, ModelError

__all__ = [
    "BUILTIN_BOX_MAPS",
    "DEFAULT_BOX_MAP",
    "boxes_to_squares",
    "check_box_map",
    "fit_box_map",
    "fit_from_pairs",
    "read_box_map_file",
    "get_box_map",
    "resolve_box_map",
    "square_to_box",
    "write_box_map",
]

DEFAULT_BOX_MAP = {"detector": None, "cx": 0.0, "cy": 0.0, "side": 1.0, "source": "default (identity square)"}

_BUILTIN_SOURCE = "built-in: fitted by fit_box_map on 300 ytf68-train faces (300w68 face squares)"
#: maps used when the stage-1 model has none for the detector (see the module docstring)
BUILTIN_BOX_MAPS = {
    "yunet": {"detector": "yunet", "cx": 0.0039, "cy": 0.1291, "side": 0.8162, "source": _BUILTIN_SOURCE},
    "yuface": {"detector": "yuface", "cx": 0.0143, "cy": 0.1395, "side": 0.8246, "source": _BUILTIN_SOURCE},
}


def resolve_box_map(meta: dict, detector: str) -> tuple[dict, str]:
    """(map, where from: ``"model"``, ``"built-in"`` or ``"default"``) for ``detector`` and a stage-1 model."""
    stored = get_box_map(meta, detector)
    if stored is not None:
        return stored, "model"
    if detector in BUILTIN_BOX_MAPS:
        return BUILTIN_BOX_MAPS[detector], "built-in"
    return DEFAULT_BOX_MAP, "default"


def get_box_map(meta: dict, detector: str) -> dict | None:
    """The stored map for ``detector`` in a model's metadata, or None."""
    maps = meta.get("detector_box_maps") or {}
    if isinstance(maps, dict) and isinstance(maps.get(detector), dict):
        return maps[detector]
    single = meta.get("detector_box_map")
    if isinstance(single, dict) and single.get("detector") in (detector, None):
        return single
    return None


def boxes_to_squares(boxes: np.ndarray, box_map: dict | None) -> np.ndarray:
    """Face squares ``(N, 3)`` (cx, cy, side) from detector boxes ``(N, 4)`` through ``box_map``."""
    m = box_map or DEFAULT_BOX_MAP
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx = (b[:, 0] + b[:, 2]) / 2 + float(m.get("cx", 0.0)) * w
    cy = (b[:, 1] + b[:, 3]) / 2 + float(m.get("cy", 0.0)) * h
    side = float(m.get("side", 1.0)) * np.maximum(w, h)
    return np.stack([cx, cy, np.maximum(side, 1e-6)], 1)


def square_to_box(squares: np.ndarray) -> np.ndarray:
    """``(N, 3)`` (cx, cy, side) -> ``(N, 4)`` boxes."""
    s = np.asarray(squares, dtype=np.float64).reshape(-1, 3)
    h = s[:, 2] / 2
    return np.stack([s[:, 0] - h, s[:, 1] - h, s[:, 0] + h, s[:, 1] + h], 1)


def _residuals(boxes: np.ndarray, squares: np.ndarray, box_map: dict) -> dict:
    pred = boxes_to_squares(boxes, box_map)
    side = squares[:, 2]
    centre = np.linalg.norm(pred[:, :2] - squares[:, :2], axis=1) / side
    rel = np.abs(pred[:, 2] - side) / side
    iou = np.diag(box_iou(square_to_box(pred), square_to_box(squares))) if len(pred) else np.zeros(0)
    return {"centre_err_median": round(float(np.median(centre)), 4) if len(centre) else None,
            "side_err_median": round(float(np.median(rel)), 4) if len(rel) else None,
            "iou_mean": round(float(np.mean(iou)), 4) if len(iou) else None}


def fit_from_pairs(boxes: np.ndarray, squares: np.ndarray, detector: str | None = None) -> dict:
    """Fit the map (medians, see the module docstring) from matched detector boxes ``(N, 4)`` and ground-truth
    squares ``(N, 3)``; includes the residuals of the identity default and of the fitted map."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(squares, dtype=np.float64).reshape(-1, 3)
    if len(b) == 0:
        raise DataError("no detector box matched a ground-truth face: cannot fit a box map")
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    bcx, bcy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    m = {
        "detector": detector,
        "cx": round(float(np.median((s[:, 0] - bcx) / w)), 5),
        "cy": round(float(np.median((s[:, 1] - bcy) / h)), 5),
        "side": round(float(np.median(s[:, 2] / np.maximum(w, h))), 5),
        "form": "centre = box centre + (cx*w, cy*h); side = side*max(w, h)",
        "matched": len(b),
    }
    m["residuals"] = _residuals(b, s, m)
    m["residuals_identity"] = _residuals(b, s, DEFAULT_BOX_MAP)
    return m


def _match_pairs(detector: FaceDetector, m, sch, images: list[str], by_image: dict, min_iou: float,
                 progress: Callable[[int, int], None] | None) -> tuple[list, list, int, list]:
    """Matched (detector box, ground-truth square) pairs of one manifest; also (faces seen, the unreadable images'
    (name, reason))."""
    from facelm.geometry import landmark_square
    from facelm.imageio import ImageReadError, read_image

    pairs_b, pairs_s = [], []
    faces, unreadable = 0, []
    for k, name in enumerate(images):
        idxs = by_image[name]
        faces += len(idxs)
        try:
            img = read_image(m.root / name, exif=False)
        except ImageReadError as e:
            unreadable.append((str(m.root / name), str(e)))
            continue
        dets = detector.detect(img, name)
        if progress:
            progress(k + 1, len(images))
        if not dets:
            continue
        db = np.stack([d.box for d in dets])
        for i in idxs:
            c, side = landmark_square(m.landmarks[i], sch.face_box_scale)
            sq = np.array([c[0], c[1], side])
            iou = box_iou(square_to_box(sq[None]), db)[0]
            j = int(np.argmax(iou))
            if iou[j] >= min_iou:
                pairs_b.append(db[j])
                pairs_s.append(sq)
    return pairs_b, pairs_s, faces, unreadable


def _faces_to_fit(m, warn: Callable[[str], None] | None):
    """The ``train`` split of manifest ``m``; all its faces when it has none, with a warning: they are its held-out
    (val/test) faces, and a map fitted on them makes a later score on them not held out."""
    train = m.split("train")
    if len(train):
        return train
    if len(m) and warn:
        counts = {k: sum(s.split == k for s in m.samples) for k in ("val", "test")}
        held = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        warn(f"{m.path.parent}: no train split: the box map is fitted on its held-out (val/test) faces ({held}), "
             "so scoring on them afterwards is not held out")
    return m


def fit_box_map(detector: FaceDetector, manifest, *, scheme=None, limit: int = 0, min_iou: float = 0.3,
                progress: Callable[[int, int], None] | None = None,
                warn: Callable[[str], None] | None = None) -> dict:
    """Run ``detector`` over one or several prepared manifests and fit its box map (see the module docstring).

    Only the faces of the ``train`` split are used when a manifest has one (held-out faces stay unseen); a
    manifest without one is used whole, and ``warn`` is told that its held-out (val/test) faces were used.

    Args:
        detector: any :class:`FaceDetector` (its ``name`` is recorded).
        manifest: a :class:`facelm.manifest.Manifest` or the path of a prepared folder / manifest file, or a list
            of them (the map is fitted on all their faces together; ``per_source`` reports each one's fit).
        scheme: the landmark scheme (default: the manifest's) whose ``face_box_scale`` defines the squares.
        limit: use at most this many images of each manifest (0 = all).
        min_iou: a detection must overlap the ground-truth square at least this much to count as a match.
        warn: receives one line per manifest without a ``train`` split (fitted on its held-out faces).

    Returns:
        The map dict, with ``matched``, ``faces`` (ground-truth faces seen), ``images``, residuals, ``per_source``
        and provenance.
    """
    from facelm.manifest import Manifest, load_manifest
    from facelm.schemes import get_scheme

    many = manifest if isinstance(manifest, (list, tuple)) else [manifest]
    t0 = time.perf_counter()
    all_b, all_s, per = [], [], {}
    faces = images_n = 0
    unreadable: list[tuple[str, str]] = []
    sch = None
    paths, hashes = [], []
    for item in many:
        m = item if isinstance(item, Manifest) else load_manifest(item)
        s = get_scheme(scheme or m.scheme)
        if m.scheme != s.name:
            raise DataError(f"{m.path}: its faces are in scheme {m.scheme!r}, not the model's {s.name!r}: "
                            "a box map is fitted on faces of the model's own scheme")
        if sch is not None and s.name != sch.name:
            raise DataError(f"{m.path}: scheme {s.name!r} differs from the other folders' {sch.name!r}")
        sch, m = s, _faces_to_fit(m, warn)  # after the checks: no warning before an error
        by_image: dict[str, list[int]] = defaultdict(list)
        for i, smp in enumerate(m.samples):
            if smp.dup_of is None:
                by_image[smp.image].append(i)
        images = list(by_image)
        if limit:
            images = images[:limit]
        b, sq, f, u = _match_pairs(detector, m, s, images, by_image, min_iou, progress)
        faces, images_n, unreadable = faces + f, images_n + len(images), unreadable + u
        all_b += b
        all_s += sq
        per[str(m.path.parent)] = {"faces": f, "matched": len(b), "boxes": np.array(b).reshape(-1, 4),
                                   "squares": np.array(sq).reshape(-1, 3)}
        paths.append(str(m.path))
        hashes.append(m.content_hash())
    if not all_b:
        why = f"the {detector.name} detector matched none of the {faces} faces (IoU >= {min_iou})"
        if unreadable and len(unreadable) == images_n:  # e.g. a prepared folder moved away from its images
            why = (f"none of the {images_n} images could be read (first: {unreadable[0][0]}: {unreadable[0][1]}; "
                   "the manifest names them relative to its folder)")
        elif unreadable:
            why += f"; {len(unreadable)} of the {images_n} images could not be read"
        raise DataError(f"{', '.join(paths)}: {why}; cannot fit a box map")
    out = fit_from_pairs(np.array(all_b), np.array(all_s), detector.name)
    out["per_source"] = {k: {"faces": v["faces"], "matched": v["matched"],
                             "residuals": _residuals(v["boxes"], v["squares"], out) if v["matched"] else None}
                         for k, v in per.items()}
    out.update({"faces": faces, "images": images_n, "unreadable": len(unreadable), "min_iou": min_iou,
                "scheme": sch.name, "face_box_scale": sch.face_box_scale,
                "fitted_on": paths[0] if len(paths) == 1 else paths,
                "manifest_sha256": hashes[0] if len(hashes) == 1 else hashes,
                "seconds": round(time.perf_counter() - t0, 1)})
    if hasattr(detector, "model"):
        out["detector_model"] = Path(detector.model).name
    return out


MAX_BOX_MAP = 10.0  # the largest |cx|, |cy| and side a box map file may hold (fractions of the detector box)


def read_box_map_file(path: str | Path) -> dict:
    """A box map from a JSON file (what ``facelm fit-box-map`` prints on stdout); ``DataError`` naming the file."""
    import json

    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: cannot read the box map: {getattr(e, 'strerror', None) or e}") from None
    return check_box_map(d, str(p))


def check_box_map(d: Any, where: str, error: type[Exception] = DataError) -> dict:
    """``d`` if it is a usable box map (numbers ``cx``, ``cy`` within +-``MAX_BOX_MAP``, ``side`` in
    (0, ``MAX_BOX_MAP``]), else ``error`` naming ``where`` (a file, or ```box_map``` for a given dict)."""
    import math

    try:
        if any(isinstance(d[k], bool) for k in ("cx", "cy", "side")):  # JSON true is not a number
            raise TypeError
        vals = [float(d[k]) for k in ("cx", "cy", "side")]
    except (KeyError, TypeError, ValueError, IndexError):
        raise error(f"{where}: not a box map (needs numbers cx, cy and side, as `facelm fit-box-map` prints)"
                    ) from None
    # fractions of the box: a fitted map is within a few tenths of (0, 0, 1); far outside, the squares overflow
    if not all(math.isfinite(v) for v in vals) or not (abs(vals[0]) <= MAX_BOX_MAP and abs(vals[1]) <= MAX_BOX_MAP
                                                      and 0 < vals[2] <= MAX_BOX_MAP):
        raise error(f"{where}: box map values must be finite, cx and cy within +-{MAX_BOX_MAP:g} and side in "
                    f"(0, {MAX_BOX_MAP:g}], got cx {vals[0]:g}, cy {vals[1]:g}, side {vals[2]:g}")
    return d


def write_box_map(onnx_path: str | Path, box_map: dict) -> dict:
    """Store ``box_map`` in a stage-1 ONNX file's facelm metadata (atomically); returns the new metadata.

    Raises:
        ModelError: not a facelm model, or not a stage-1 model, or the map has no detector name.
    """
    import onnx

    from facelm._io import atomic_path
    from facelm.modelfile import load_proto, proto_meta, set_onnx_meta

    p = Path(onnx_path)
    det = box_map.get("detector")
    if not det:
        raise ModelError("the box map has no detector name")
    proto = load_proto(p)
    meta = proto_meta(proto, p)
    if int(meta.get("stage", 0)) != 1:
        raise ModelError(f"{p}: box maps belong in the stage-1 model (this is stage {meta.get('stage')})")
    maps = dict(meta.get("detector_box_maps") or {})
    maps[det] = box_map
    meta["detector_box_maps"] = maps
    set_onnx_meta(proto, meta)
    with atomic_path(p) as tmp:
        onnx.save(proto, str(tmp))
    return meta
