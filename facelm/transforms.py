"""Model crops and the paper's augmentation, cut from the crop cache with one affine warp per face.

A *frame* places the model crop: ``(cx, cy, side, angle)`` in crop-cache pixels. ``side`` is the face box side;
the model crop covers ``CROP_EXPAND x side`` (the face box plus 10% on each side), rotated by ``angle``
(degrees, the in-plane angle of the eye line; the crop removes it).

Augmentation (Wing paper §7.1), drawn per face from a seeded generator:

* rotation uniform in ``±rotate`` degrees (30 for CNN-6, 10 for CNN-7); with probability ``full_turn`` (0 by
  default; facelm's shipped stage-1 model uses more, see docs/training.md) uniform in ±180 degrees instead, so
  that stage 1 also finds the landmarks of faces at any in-plane angle;
* horizontal flip with probability 0.5, with the scheme's flip permutation;
* box perturbation: the top-left and bottom-right corners of the face box each move by up to ``perturb`` (5%)
  of the box side in x and y, so the crop may change aspect (it is resized to the square input);
* Gaussian blur with sigma 1 on half of the crops.

Points that leave the crop stay regression targets (their position is still defined and coordinate regression
extrapolates); points further than ``outside_tol`` x input size outside the crop are masked out of the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facelm.geometry import eye_angle

__all__ = ["AugmentConfig", "CROP_EXPAND", "frame_matrices", "render_batch", "upright_frames", "face_frames"]

CROP_EXPAND = 1.2


@dataclass(frozen=True)
class AugmentConfig:
    rotate: float = 30.0
    flip_p: float = 0.5
    perturb: float = 0.05
    blur_p: float = 0.5
    blur_sigma: float = 1.0
    outside_tol: float = 0.1
    full_turn: float = 0.0

    @staticmethod
    def for_arch(arch: str, rotate: float | None = None, full_turn: float = 0.0) -> AugmentConfig:
        default = 10.0 if arch == "cnn7" else 30.0
        return AugmentConfig(rotate=default if rotate is None else float(rotate), full_turn=float(full_turn))


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


def frame_matrices(frames: np.ndarray, out_size: int, rng: np.random.Generator | None = None,
                   aug: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Affine matrices ``(N, 2, 3)`` from source (cache) pixels to model-input pixels, and flip flags ``(N,)``.

    Without ``rng``/``aug`` the crop is the plain frame (evaluation and inference).
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


def render_batch(images: np.ndarray, index: np.ndarray, landmarks: np.ndarray, mats: np.ndarray,
                 flips: np.ndarray, flip_perm: np.ndarray, out_size: int,
                 rng: np.random.Generator | None = None, aug: AugmentConfig | None = None,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp source crops into a model batch.

    Args:
        images: source crops ``(M, S, S, 3)`` uint8 (usually the memory-mapped cache).
        index: rows of ``images`` to use, ``(N,)``.
        landmarks: ``(N, L, 2)`` source-pixel landmarks.
        mats: ``(N, 2, 3)`` from ``frame_matrices``; flips: ``(N,)``.
        flip_perm: ``(L,)`` scheme flip permutation.
        out: optional preallocated ``(N, out, out, 3)`` uint8 buffer.

    Returns:
        (batch ``(N, out, out, 3)`` uint8 RGB, landmarks ``(N, L, 2)`` float32 in input pixels, mask ``(N, L)``
        bool of points within ``outside_tol`` of the crop).
    """
    n = len(index)
    batch = out if out is not None else np.empty((n, out_size, out_size, 3), np.uint8)
    blur = (rng.random(n) < aug.blur_p) if (rng is not None and aug is not None) else np.zeros(n, bool)
    for i in range(n):
        batch[i] = cv2.warpAffine(images[index[i]], mats[i], (out_size, out_size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT)
        if blur[i]:
            cv2.GaussianBlur(batch[i], (0, 0), aug.blur_sigma, dst=batch[i])
    lm = np.einsum("nij,nlj->nli", mats[:, :, :2], landmarks) + mats[:, None, :, 2]
    if flips.any():
        lm[flips] = lm[flips][:, flip_perm]
    tol = (aug.outside_tol if aug is not None else AugmentConfig.outside_tol) * out_size
    lo, hi = -0.5 - tol, out_size - 0.5 + tol
    mask = np.all((lm >= lo) & (lm <= hi), axis=-1)
    return batch, lm.astype(np.float32), mask


def rotation_of(m: np.ndarray) -> float:
    """The rotation angle in degrees encoded by a crop matrix (for tests and diagnostics)."""
    return math.degrees(math.atan2(m[0, 1], m[0, 0]))


