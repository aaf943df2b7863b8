"""The model-crop convention: where a landmark model's input crop lies, in crop-cache pixels.

A *frame* places the model crop: ``(cx, cy, side, angle)`` in crop-cache pixels. ``side`` is the face box side;
the model crop covers ``CROP_EXPAND x side`` (the face box plus 10% on each side), rotated by ``angle``
(degrees, the in-plane angle of the eye line; the crop removes it).

Stage 1 crops the face square the crop cache is centred on (``face_frames``); stage 2 crops the upright square
of a shape (``upright_frames``: the stage-1 prediction at inference, ground truth or stage-1 output in
training). ``stage_frames`` picks between them. Training, export checks, evaluation and the runtime all take
their crops from here; the augmentation drawn on top of a frame lives in ``facelm.augment``.
"""

from __future__ import annotations

import numpy as np

from facelm.geometry import apply_affines, eye_angle

__all__ = ["CROP_EXPAND", "DEFAULT_CACHE_SIZE", "DEFAULT_MARGIN", "cache_geometry", "cache_landmarks",
           "face_frames", "frame_matrices", "reframe", "stage_frames", "upright_frames"]

CROP_EXPAND = 1.2
DEFAULT_CACHE_SIZE = 192  # crop-cache side in pixels (``facelm prepare --cache-size``)
DEFAULT_MARGIN = 1.8  # crop-cache side / face box side (``facelm prepare --margin``)


def cache_geometry(info: dict) -> tuple[int, float]:
    """(cache size, margin) of a prepared dataset from its prepare info (the defaults where it is silent)."""
    return int(info.get("cache_size", DEFAULT_CACHE_SIZE)), float(info.get("margin", DEFAULT_MARGIN))


def cache_landmarks(matrix: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Landmarks ``(N, L, 2)`` in crop-cache pixels from image pixels and matrices ``(N, 2, 3)``."""
    return apply_affines(np.asarray(matrix, dtype=np.float64), np.asarray(landmarks, dtype=np.float64))


def face_frames(n: int, cache_size: int, margin: float) -> np.ndarray:
    """Frames ``(n, 4)`` of the face squares the crop cache is centred on (upright)."""
    c = (cache_size - 1) / 2.0
    return np.tile(np.array([c, c, cache_size / margin, 0.0]), (n, 1))


def upright_frames(landmarks: np.ndarray, left_eye: np.ndarray, right_eye: np.ndarray,
                   box_scale: float) -> np.ndarray:
    """Frames ``(N, 4)`` from shapes ``(N, L, 2)``: angle from the eye line, face square in the upright frame.

    This is the stage-2 box correction: the shape is rotated level about its centre, its bounding square
    (side ``box_scale x max(w, h)``) is taken there, and the centre is mapped back.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    ang = eye_angle(left_eye, right_eye)
    t = np.radians(ang)
    c, s = np.cos(t), np.sin(t)
    centre0 = (lm.min(1) + lm.max(1)) / 2
    d = lm - centre0[:, None, :]
    # rotate by -angle: [[c, s], [-s, c]]
    ux = c[:, None] * d[..., 0] + s[:, None] * d[..., 1]
    uy = -s[:, None] * d[..., 0] + c[:, None] * d[..., 1]
    lo = np.stack([ux.min(1), uy.min(1)], 1)
    hi = np.stack([ux.max(1), uy.max(1)], 1)
    mid = (lo + hi) / 2
    side = (hi - lo).max(1) * box_scale
    # back to the original frame: rotate by +angle
    cx = centre0[:, 0] + c * mid[:, 0] - s * mid[:, 1]
    cy = centre0[:, 1] + s * mid[:, 0] + c * mid[:, 1]
    return np.stack([cx, cy, np.maximum(side, 1e-6), ang], 1)


def reframe(frames: np.ndarray, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """Frames ``(N, 4)`` with their side times ``scale`` and their centre moved by ``(dx, dy)`` sides along the
    frame's own axes (x along the levelled eye line, y down the levelled face); the angle is kept."""
    f = np.array(frames, dtype=np.float64, copy=True).reshape(-1, 4)
    t = np.radians(f[:, 3])
    ox, oy = dx * f[:, 2], dy * f[:, 2]
    f[:, 0] += np.cos(t) * ox - np.sin(t) * oy
    f[:, 1] += np.sin(t) * ox + np.cos(t) * oy
    f[:, 2] *= scale
    return f


def stage_frames(stage: int, info: dict, lm_cache: np.ndarray, scheme, stage1_pred: np.ndarray | None = None
                 ) -> np.ndarray:
    """Plain (validation / evaluation) frames of a prepared dataset's faces for a stage-``stage`` model.

    Stage 1: the face square of the crop cache; stage 2: the upright square of ``stage1_pred`` (stage-1 shapes
    in cache pixels, ``(N, L, 2)``) or, without it, of the ground-truth shape ``lm_cache``.
    """
    if int(stage) != 2:
        size, margin = cache_geometry(info)
        return face_frames(len(lm_cache), size, margin)
    shape = stage1_pred if stage1_pred is not None else lm_cache
    le, re = scheme.eye_centres(shape)
    return upright_frames(shape, le, re, scheme.face_box_scale)


def frame_matrices(frames: np.ndarray, out_size: int, rng: np.random.Generator | None = None,
                   aug=None) -> tuple[np.ndarray, np.ndarray]:
    """Affine matrices ``(N, 2, 3)`` from source (cache) pixels to model-input pixels, and flip flags ``(N,)``.

    Without ``rng``/``aug`` the crop is the plain frame (evaluation and inference); ``aug`` is an
    ``facelm.augment.AugmentConfig`` (duck-typed here: this module does not import training code).
    """
    f = np.asarray(frames, dtype=np.float64)
    n = len(f)
    cx, cy, side, ang = f[:, 0].copy(), f[:, 1].copy(), f[:, 2].copy(), f[:, 3].copy()
    w = side.copy()
    h = side.copy()
    flip = np.zeros(n, dtype=bool)
    if rng is not None and aug is not None:
        ang = ang + rng.uniform(-aug.rotate, aug.rotate, n)
        if aug.full_turn > 0:  # (no extra draws otherwise: runs without it keep their random stream)
            turn = rng.random(n) < aug.full_turn
            ang = np.where(turn, f[:, 3] + rng.uniform(-180.0, 180.0, n), ang)
        # corners of the face box (in the box's own upright frame) move by up to perturb * side each
        d = rng.uniform(-aug.perturb, aug.perturb, (n, 4)) * side[:, None]
        x1, y1, x2, y2 = -w / 2 + d[:, 0], -h / 2 + d[:, 1], w / 2 + d[:, 2], h / 2 + d[:, 3]
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        w, h = x2 - x1, y2 - y1
        t = np.radians(f[:, 3])
        cx = cx + np.cos(t) * mx - np.sin(t) * my
        cy = cy + np.sin(t) * mx + np.cos(t) * my
        flip = rng.random(n) < aug.flip_p
    t = np.radians(ang)
    c, s = np.cos(t), np.sin(t)
    kx = out_size / (CROP_EXPAND * w)
    ky = out_size / (CROP_EXPAND * h)
    kx = np.where(flip, -kx, kx)
    m = np.empty((n, 2, 3))
    m[:, 0, 0], m[:, 0, 1] = kx * c, kx * s
    m[:, 1, 0], m[:, 1, 1] = -ky * s, ky * c
    half = (out_size - 1) / 2.0
    m[:, 0, 2] = half - (m[:, 0, 0] * cx + m[:, 0, 1] * cy)
    m[:, 1, 2] = half - (m[:, 1, 0] * cx + m[:, 1, 1] * cy)
    return m, flip
