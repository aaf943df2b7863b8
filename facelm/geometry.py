"""Affine crops and their inverses, face boxes from landmarks, in-plane angle, Procrustes.

Coordinate convention everywhere: 0-based pixels, pixel centres at integer positions, x right, y down.
A 2x3 affine matrix ``M`` maps a point ``p`` (column ``[x, y, 1]``) to ``M @ p``; this is the matrix
``cv2.warpAffine(src, M, size)`` takes (it maps source pixel centres to destination pixel centres).

A *crop* of side ``s`` centred on ``c`` into an ``S x S`` output, with the image rotated by ``-angle``
(so that a face whose eye line has angle ``angle`` comes out level), is::

    out = k * R(-angle) @ (p - c) + (S - 1) / 2,    k = S / s

so the output's outer pixel edges (-0.5 and S - 0.5) correspond to ``c -/+ s/2`` along each crop axis.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "crop_matrix", "apply_affine", "invert_affine", "compose_affine", "warp_crop",
    "landmark_square", "eye_angle", "box_to_square", "procrustes_align", "generalized_procrustes",
]


def crop_matrix(center: tuple[float, float] | np.ndarray, side: float, out_size: int,
                angle_deg: float = 0.0) -> np.ndarray:
    """Matrix (2, 3) mapping image pixels to crop pixels (see module docstring)."""
    cx, cy = float(center[0]), float(center[1])
    k = out_size / float(side)
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    # R(-angle) = [[c, s], [-s, c]]
    a = np.array([[c, s], [-s, c]], dtype=np.float64) * k
    h = (out_size - 1) / 2.0
    off = np.array([h, h]) - a @ np.array([cx, cy])
    return np.hstack([a, off[:, None]])


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to points ``(..., 2)``; returns float64 ``(..., 2)``."""
    p = np.asarray(pts, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    a_inv = np.linalg.inv(m[:, :2])
    return np.hstack([a_inv, (-a_inv @ m[:, 2])[:, None]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine ``outer ∘ inner`` (apply ``inner`` first)."""
    o = np.asarray(outer, dtype=np.float64)
    i = np.asarray(inner, dtype=np.float64)
    return np.hstack([o[:, :2] @ i[:, :2], (o[:, :2] @ i[:, 2] + o[:, 2])[:, None]])


def warp_crop(image: np.ndarray, m: np.ndarray, out_size: int | tuple[int, int],
              border: int = cv2.BORDER_CONSTANT, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp ``image`` by ``m`` into an output of ``out_size`` pixels, anti-aliased when shrinking.

    Bilinear warping of a strongly shrunk image aliases; when the scale is below 1/2 the source is first
    reduced with ``INTER_AREA`` by a factor that keeps the final warp at a scale in (1/2, 1], and ``m`` is
    adjusted to match, so the result is the same geometry either way.
    """
    w, h = (out_size, out_size) if isinstance(out_size, int) else out_size
    m = np.asarray(m, dtype=np.float64)
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    if scale < 0.5:
        f = 1.0 / math.floor(1.0 / scale)  # shrink factor for the pre-resize, in (scale, 0.5]
        sh, sw = image.shape[:2]
        nw, nh = max(1, round(sw * f)), max(1, round(sh * f))
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        # pixel-centre mapping of resize: x_small = (x + 0.5) * nw / sw - 0.5
        fx, fy = nw / sw, nh / sh
        r = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]], dtype=np.float64)
        m = compose_affine(m, invert_affine(r))
        image = small
    return cv2.warpAffine(image, m, (w, h), flags=interpolation, borderMode=border)


def landmark_square(landmarks: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, float]:
    """Square face box from landmarks ``(L, 2)``: (centre (2,), side) with side = scale * max(w, h).

    NaN landmarks (missing) are ignored.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    lo = np.nanmin(lm, axis=0)
    hi = np.nanmax(lm, axis=0)
    centre = (lo + hi) / 2.0
    side = float(max(hi - lo)) * scale
    return centre, max(side, 1e-6)


def box_to_square(box: np.ndarray | list[float], scale: float = 1.0) -> tuple[np.ndarray, float]:
    """Square (centre, side) from an ``[x1, y1, x2, y2]`` box: side = scale * max(w, h)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2]), max(x2 - x1, y2 - y1) * scale


def eye_angle(left_eye: np.ndarray, right_eye: np.ndarray) -> np.ndarray:
    """In-plane angle in degrees of the line from the image-left eye to the image-right eye.

    0 means level; positive means the right eye is lower (a clockwise roll on screen, y pointing down).
    Works on ``(..., 2)`` arrays.
    """
    d = np.asarray(right_eye, dtype=np.float64) - np.asarray(left_eye, dtype=np.float64)
    return np.degrees(np.arctan2(d[..., 1], d[..., 0]))


def procrustes_align(shape: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-align ``shape`` (L, 2) onto ``target`` (L, 2) by least squares (no reflection).

    Returns (aligned shape (L, 2), 2x3 matrix mapping shape -> aligned).
    """
    x = np.asarray(shape, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    # complex-number form of the 2-D similarity fit: y ≈ (a + ib) x
    denom = (xc ** 2).sum()
    if denom <= 0:
        raise ValueError("degenerate shape: all points are equal")
    a = (xc * yc).sum() / denom
    b = (xc[:, 0] * yc[:, 1] - xc[:, 1] * yc[:, 0]).sum() / denom
    r = np.array([[a, -b], [b, a]])
    m = np.hstack([r, (my - r @ mx)[:, None]])
    return apply_affine(m, x), m


def generalized_procrustes(shapes: np.ndarray, iters: int = 20, tol: float = 1e-8
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes analysis of shapes ``(N, L, 2)``.

    The mean shape is normalised to zero centroid, unit RMS size and fixed orientation (the first iteration's
    reference is the first shape). Returns (aligned shapes (N, L, 2), mean shape (L, 2)).
    """
    s = np.asarray(shapes, dtype=np.float64)
    if s.ndim != 3 or s.shape[-1] != 2:
        raise ValueError(f"shapes must be (N, L, 2), got {s.shape}")

    def _norm(m: np.ndarray) -> np.ndarray:
        m = m - m.mean(0)
        n = np.sqrt((m ** 2).sum(1).mean())
        if n <= 0:
            raise ValueError("degenerate mean shape")
        return m / n

    mean = _norm(s[0])
    aligned = s
    for _ in range(iters):
        aligned = np.stack([procrustes_align(x, mean)[0] for x in s])
        new_mean = _norm(aligned.mean(0))
        new_mean = procrustes_align(new_mean, mean)[0]
        new_mean = _norm(new_mean)
        delta = np.abs(new_mean - mean).max()
        mean = new_mean
        if delta < tol:
            break
    aligned = np.stack([procrustes_align(x, mean)[0] for x in s])
    return aligned, mean
