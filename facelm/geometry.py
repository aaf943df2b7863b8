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

import numpy as np

__all__ = [
    "crop_matrix", "apply_affine", "invert_affine", "compose_affine", "warp_crop",
    "landmark_square", "eye_angle", "apply_affines", "invert_affines", "procrustes_align", "generalized_procrustes", "align_shapes",
    "turn_image", "turn_matrix", "point_boxes",
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


def invert_affines(mats: np.ndarray) -> np.ndarray:
    """Inverses ``(N, 2, 3)`` of affine matrices ``(N, 2, 3)``; an empty input gives an empty ``(0, 2, 3)``."""
    m = np.asarray(mats, dtype=np.float64)
    if len(m) == 0:
        return np.zeros((0, 2, 3))
    return np.stack([invert_affine(a) for a in m])


def apply_affines(mats: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points ``(N, L, 2)`` mapped by one affine matrix per row, ``mats`` ``(N, 2, 3)``."""
    m = np.asarray(mats, dtype=np.float64)
    return np.einsum("nij,nlj->nli", m[:, :, :2], points) + m[:, None, :, 2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine ``outer ∘ inner`` (apply ``inner`` first)."""
    o = np.asarray(outer, dtype=np.float64)
    i = np.asarray(inner, dtype=np.float64)
    return np.hstack([o[:, :2] @ i[:, :2], (o[:, :2] @ i[:, 2] + o[:, 2])[:, None]])


def warp_crop(image: np.ndarray, m: np.ndarray, out_size: int | tuple[int, int],
              border: int = 0, interpolation: int = 1) -> np.ndarray:
    """Warp ``image`` by ``m`` into an output of ``out_size`` pixels, anti-aliased when shrinking.

    Bilinear warping of a strongly shrunk image aliases; when the scale is below 1/2 the source is first
    reduced with ``INTER_AREA`` by a factor that keeps the final warp at a scale in (1/2, 1], and ``m`` is
    adjusted to match, so the result is the same geometry either way. ``border`` and ``interpolation`` are
    OpenCV flags (default ``cv2.BORDER_CONSTANT`` and ``cv2.INTER_LINEAR``).
    """
    import cv2  # here: the training data path (facelm.train) runs without OpenCV

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


def turn_matrix(w: int, h: int, degrees: float) -> tuple[np.ndarray, tuple[int, int]]:
    """(2x3 matrix from pixels of a ``(h, w)`` image to pixels of it turned counter-clockwise (on screen) by
    ``degrees`` about its centre, the size (width, height) of the canvas grown to hold all of it)."""
    import cv2

    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * s + w * c), int(h * c + w * s)
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return m, (nw, nh)


def turn_image(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned counter-clockwise (on screen) by ``degrees`` about its centre, the canvas grown to hold
    all of it (black corners): returns (turned image, the 2x3 matrix mapping original pixels to it)."""
    import cv2

    h, w = image.shape[:2]
    m, size = turn_matrix(w, h, degrees)
    return cv2.warpAffine(image, m, size), m


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


def point_boxes(shapes: np.ndarray, min_points: int = 1) -> np.ndarray:
    """``(N, 4)`` x1, y1, x2, y2 of the finite points of each shape ``(N, L, 2)``; NaN rows where fewer than
    ``min_points`` points are finite."""
    pts = np.asarray(shapes, dtype=np.float64)
    ok = np.isfinite(pts).all(axis=-1, keepdims=True)
    lo = np.where(ok, pts, np.inf).min(axis=1)
    hi = np.where(ok, pts, -np.inf).max(axis=1)
    out = np.concatenate([lo, hi], axis=1)
    out[ok[..., 0].sum(axis=1) < min_points] = np.nan
    return out


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


def _as_complex(shapes: np.ndarray) -> np.ndarray:
    s = np.asarray(shapes, dtype=np.float64)
    return s[..., 0] + 1j * s[..., 1]


def _as_real(z: np.ndarray) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1)


def align_shapes(shapes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Similarity-align every shape ``(N, L, 2)`` onto ``target`` ``(L, 2)`` by least squares, vectorised.

    The same fit as :func:`procrustes_align` (complex form ``y ~ a x + t``, no reflection). NaN points are left
    out of the fit and stay NaN; a shape with fewer than 2 distinct annotated points comes back all NaN.
    """
    return _as_real(_align_complex(_as_complex(shapes), _as_complex(target)))


def _align_complex(z: np.ndarray, target: np.ndarray) -> np.ndarray:
    w = np.isfinite(z)
    n_ok = w.sum(1)
    zz = np.where(w, z, 0)
    tt = np.where(w, target[None, :], 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mz = zz.sum(1) / n_ok
        mt = tt.sum(1) / n_ok
        zc = np.where(w, z - mz[:, None], 0)
        tc = np.where(w, target[None, :] - mt[:, None], 0)
        denom = (np.abs(zc) ** 2).sum(1)
        a = (np.conj(zc) * tc).sum(1) / denom
        out = a[:, None] * (z - mz[:, None]) + mt[:, None]
    # degenerate: all annotated points at one place (up to rounding of the centring)
    bad = (n_ok < 2) | ~(denom > 1e-24 * (np.abs(zz) ** 2).sum(1) + 1e-300) | ~np.isfinite(a)
    out[bad] = complex(np.nan, np.nan)
    return out


def _unit(m: np.ndarray) -> np.ndarray:
    m = m - m.mean()
    n = np.sqrt((np.abs(m) ** 2).mean())
    if not n > 0:
        raise ValueError("degenerate mean shape (all points equal)")
    return m / n


def generalized_procrustes(shapes: np.ndarray, iters: int = 50, tol: float = 1e-10
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes analysis of complete shapes ``(N, L, 2)``, vectorised over shapes.

    The mean shape is normalised to zero centroid and unit RMS size; its orientation is that of the first shape
    (the first iteration's reference). Returns (aligned shapes (N, L, 2), mean shape (L, 2)).

    Raises:
        ValueError: wrong shape, or a degenerate shape (all points equal).
    """
    z = _as_complex(shapes)
    if z.ndim != 2 or z.shape[0] == 0 or np.shape(shapes)[-1] != 2:
        raise ValueError(f"shapes must be (N, L, 2) with N > 0, got {np.shape(shapes)}")
    mean = _unit(z[0])
    for _ in range(iters):
        aligned = _align_complex(z, mean)
        if not np.isfinite(aligned).all():
            raise ValueError("degenerate shape in the Procrustes fit (all points equal)")
        new = _unit(_align_complex(_unit(aligned.mean(0))[None, :], mean)[0])
        delta = np.abs(new - mean).max()
        mean = new
        if delta < tol:
            break
    return _as_real(_align_complex(z, mean)), _as_real(mean)
