"""Face squares from detections and the image patch each face keeps (steps 1 and 2 of
``facelm.runtime.pipeline``; docs/predict.md)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from facelm.crops import CROP_EXPAND
from facelm.detectors.base import Detection
from facelm.detectors.boxmap import boxes_to_squares
from facelm.geometry import compose_affine

__all__ = ["PATCH_RADIUS", "face_patch", "face_squares"]

#: half-side of the image patch kept per face, in face sides (stage-2 crops reach ~0.85 side from their centre)
PATCH_RADIUS = 1.5


def face_squares(dets: list[Detection], box_map: dict | None) -> np.ndarray:
    """Stage-1 face squares ``(N, 3)`` for detections (``facelm.runtime.pipeline``'s docstring, step 1)."""
    out = np.zeros((len(dets), 3))
    for i, d in enumerate(dets):
        b = np.asarray(d.box, dtype=np.float64)
        if d.kind == "detector":
            out[i] = boxes_to_squares(b[None], box_map)[0]
        else:
            w, h = b[2] - b[0], b[3] - b[1]
            side = max(w, h) / (CROP_EXPAND if d.kind == "crop" else 1.0)
            out[i] = [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, max(side, 1e-6)]
    return out


def face_patch(image: np.ndarray, square: np.ndarray, out2: int) -> tuple[np.ndarray, np.ndarray]:
    """A local copy of ``image`` around a face square and the (2, 3) image -> patch affine."""
    h, w = image.shape[:2]
    cx, cy, side = (float(v) for v in square)
    r = PATCH_RADIUS * side
    x0, y0 = max(0, math.floor(cx - r)), max(0, math.floor(cy - r))
    x1, y1 = min(w, math.ceil(cx + r) + 1), min(h, math.ceil(cy + r) + 1)
    if x1 <= x0 or y1 <= y0:  # the square lies outside the image: crops are all black
        return np.zeros((1, 1, 3), np.uint8), np.array([[1.0, 0, -cx - 1e6], [0, 1.0, -cy - 1e6]])
    patch = image[y0:y1, x0:x1]
    t = np.array([[1.0, 0, -x0], [0, 1.0, -y0]])
    # the 128-px crop covers 1.2 x side: shrink patches much larger than that (what warp_crop would do anyway)
    scale = out2 / (CROP_EXPAND * side)
    if scale < 0.5:
        f = math.floor(1.0 / scale)
        ph, pw = patch.shape[:2]
        nw, nh = max(1, round(pw / f)), max(1, round(ph / f))
        patch = cv2.resize(patch, (nw, nh), interpolation=cv2.INTER_AREA)
        fx, fy = nw / pw, nh / ph
        s = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]])
        t = compose_affine(s, t)
    elif patch.size < image.size:
        patch = patch.copy()  # do not keep the whole image alive through a view
    return patch, t
