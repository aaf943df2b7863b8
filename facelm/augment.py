"""Training augmentation (Wing paper §7.1) and batch rendering: model crops cut from the crop cache with one
affine warp per face (``facelm.crops`` places the crops; this module draws the random part and warps).

Augmentation, drawn per face from a seeded generator:

* rotation uniform in ``±rotate`` degrees (30 for CNN-6, 10 for CNN-7); with probability ``full_turn`` (0 by
  default; facelm's shipped stage-1 model uses more, see docs/training.md) uniform in ±180 degrees instead, so
  that stage 1 also finds the landmarks of faces at any in-plane angle;
* horizontal flip with probability 0.5, with the scheme's flip permutation;
* box perturbation: the top-left and bottom-right corners of the face box each move by up to ``perturb`` (5%)
  of the box side in x and y, so the crop may change aspect (it is resized to the square input);
* Gaussian blur with sigma 1 on half of the crops;
* occlusion (not in the paper; off unless ``occlude`` > 0, ``facelm train --occlude P``): with probability
  ``occlude`` a rectangle of one random colour, each side 15-50% of the input side, at a random place, is painted
  over the (blurred) crop; the points under it stay regression targets, so the model learns to place hidden
  points from the rest of the face (hands, hair, glasses, microphones in front of faces);
* photometric changes (not in the paper; off unless ``photometric`` > 0, ``facelm train --photometric P``): with
  probability ``photometric`` a crop gets a random contrast and saturation change (one in five of them grey),
  exposure, brightness shift and colour balance, and sometimes sensor noise and JPEG compression (``PHOTOMETRIC``),
  applied last, so the model reads faces the same in poor light, in black and white and from compressed or noisy
  cameras.

Points that leave the crop stay regression targets (their position is still defined and coordinate regression
extrapolates); points further than ``outside_tol`` x input size outside the crop are masked out of the loss.

The random part is drawn in one order from one generator: ``facelm.crops.frame_matrices`` (rotation, full turn,
box corners, flip), then ``draw_blur``, then ``draw_occluders`` (only when ``occlude`` > 0, so that runs without
it keep their random stream), then ``draw_photometric`` (only when ``photometric`` > 0, likewise).
``render_batch`` warps the pixels on the CPU with OpenCV, one face at a time; ``facelm.train_batches`` warps the
same draws on the training device, a batch at a time. Both take the landmark targets from ``target_landmarks``, so
the targets of the two paths are identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facelm.geometry import apply_affines

__all__ = [
    "OCCLUDER_SIDE",
    "PHOTOMETRIC",
    "AugmentConfig",
    "apply_occluders",
    "apply_photometric",
    "draw_blur",
    "draw_occluders",
    "draw_photometric",
    "gaussian_kernel",
    "render_batch",
    "target_landmarks",
    "warp_crops",
]

#: occluder side range, as fractions of the input side (each side drawn on its own)
OCCLUDER_SIDE = (0.15, 0.5)
#: the photometric changes of a crop chosen by ``photometric`` (``draw_photometric``): contrast and saturation
#: factors (about the crop's mean), the share of those crops made grey, exposure (a factor on every grey level:
#: under- and over-exposed photos), brightness shift (grey levels), per-channel gain, and the share given Gaussian
#: sensor noise (sigma in grey levels) / JPEG compression (quality)
PHOTOMETRIC = {"contrast": (0.4, 1.4), "saturation": (0.5, 1.5), "grey": 0.2, "exposure": (0.3, 1.4),
               "brightness": (-24.0, 24.0), "gain": (0.85, 1.15), "noise": 0.3, "noise_sigma": (2.0, 10.0),
               "jpeg": 0.3, "jpeg_quality": (15, 70)}


@dataclass(frozen=True)
class AugmentConfig:
    rotate: float = 30.0
    flip_p: float = 0.5
    perturb: float = 0.05
    blur_p: float = 0.5
    blur_sigma: float = 1.0
    outside_tol: float = 0.1
    full_turn: float = 0.0
    occlude: float = 0.0
    photometric: float = 0.0

    @staticmethod
    def for_arch(arch: str, rotate: float | None = None, full_turn: float = 0.0, occlude: float = 0.0,
                 photometric: float = 0.0) -> AugmentConfig:
        """The paper's augmentation for ``arch``: rotation up to 30 degrees at stage 1, 10 at stage 2."""
        from facelm.models import model_stage  # here: the runtime side imports this module's floor without torch

        default = 10.0 if model_stage(arch) == 2 else 30.0
        return AugmentConfig(rotate=default if rotate is None else float(rotate), full_turn=float(full_turn),
                             occlude=float(occlude), photometric=float(photometric))


def draw_blur(n: int, rng: np.random.Generator | None, aug: AugmentConfig | None) -> np.ndarray:
    """Which of ``n`` crops are blurred, ``(n,)`` bool: drawn after ``frame_matrices`` from the same generator."""
    return (rng.random(n) < aug.blur_p) if (rng is not None and aug is not None) else np.zeros(n, bool)


def draw_occluders(n: int, size: int, rng: np.random.Generator | None, aug: AugmentConfig | None
                   ) -> np.ndarray | None:
    """The occluders of ``n`` crops of side ``size``: ``(n, 7)`` int32 rows ``x0, y0, x1, y1, r, g, b`` (the
    rectangle ``[y0:y1, x0:x1]`` in input pixels and its RGB colour; ``x1 == x0`` where a crop has none), drawn
    after ``draw_blur`` from the same generator; None (and nothing drawn) when occlusion is off."""
    if rng is None or aug is None or aug.occlude <= 0:
        return None
    u = rng.random((n, 8))
    lo, hi = OCCLUDER_SIDE
    w = np.clip(np.round(size * (lo + (hi - lo) * u[:, 1])), 1, size).astype(np.int32)
    h = np.clip(np.round(size * (lo + (hi - lo) * u[:, 2])), 1, size).astype(np.int32)
    x0 = np.minimum(np.floor(u[:, 3] * (size - w + 1)), size - w).astype(np.int32)
    y0 = np.minimum(np.floor(u[:, 4] * (size - h + 1)), size - h).astype(np.int32)
    col = np.minimum(np.floor(u[:, 5:8] * 256), 255).astype(np.int32)
    on = u[:, 0] < aug.occlude
    return np.column_stack([x0, y0, np.where(on, x0 + w, x0), y0 + h, col]).astype(np.int32)


def apply_occluders(batch: np.ndarray, occ: np.ndarray | None) -> np.ndarray:
    """Paint the occluders of ``draw_occluders`` over ``batch`` ``(N, S, S, 3)`` uint8 RGB in place; returns it."""
    if occ is not None:
        for i in np.flatnonzero(occ[:, 2] > occ[:, 0]):
            x0, y0, x1, y1 = occ[i, :4]
            batch[i, y0:y1, x0:x1] = occ[i, 4:7].astype(np.uint8)
    return batch


def draw_photometric(n: int, rng: np.random.Generator | None, aug: AugmentConfig | None) -> np.ndarray | None:
    """The photometric changes of ``n`` crops (``PHOTOMETRIC``): ``(n, 11)`` float64 rows ``on, brightness,
    contrast, saturation, gain r, g, b, noise sigma (0: none), JPEG quality (0: none), noise seed, exposure``, drawn
    after ``draw_occluders`` from the same generator; None (and nothing drawn) when ``photometric`` is off."""
    if rng is None or aug is None or aug.photometric <= 0:
        return None
    u = rng.random((n, 13))
    seeds = rng.integers(0, 2 ** 31 - 1, n)
    c = PHOTOMETRIC

    def span(k, col):
        lo, hi = c[k]
        return lo + (hi - lo) * u[:, col]

    sat = np.where(u[:, 3] < c["grey"], 0.0, span("saturation", 4))
    sigma = np.where(u[:, 8] < c["noise"], span("noise_sigma", 9), 0.0)
    q = np.where(u[:, 10] < c["jpeg"], np.round(span("jpeg_quality", 11)), 0.0)
    gains = np.stack([span("gain", j) for j in (5, 6, 7)], 1)
    return np.column_stack([u[:, 0] < aug.photometric, span("brightness", 1), span("contrast", 2), sat, gains,
                            sigma, q, seeds, span("exposure", 12)])


def apply_photometric(batch: np.ndarray, ph: np.ndarray | None) -> np.ndarray:
    """Apply the changes of ``draw_photometric`` to ``batch`` ``(N, S, S, 3)`` uint8 RGB in place; returns it. The
    noise of a crop comes from its own seed, so a batch gives the same pixels on either training path."""
    if ph is None:
        return batch
    import cv2  # here: as in warp_crops

    luma = np.array([0.299, 0.587, 0.114], np.float32)
    for i in np.flatnonzero(ph[:, 0] > 0):
        _, bright, contrast, sat, gr, gg, gb, sigma, q, seed, exposure = ph[i]
        f = batch[i].astype(np.float32)
        f = ((f - f.mean()) * np.float32(contrast) + f.mean()) * np.float32(exposure) + np.float32(bright)
        grey = f @ luma
        f = grey[..., None] + (f - grey[..., None]) * np.float32(sat)
        f *= np.array([gr, gg, gb], np.float32)
        if sigma > 0:
            f += np.random.default_rng(int(seed)).normal(0.0, sigma, f.shape).astype(np.float32)
        out = np.clip(np.rint(f), 0, 255).astype(np.uint8)
        if q > 0:
            _, buf = cv2.imencode(".jpg", np.ascontiguousarray(out[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(q)])
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        batch[i] = out
    return batch


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The 1-D kernel OpenCV's ``GaussianBlur(img, (0, 0), sigma)`` uses on uint8 images (``ksize`` 2*round(3
    sigma)+1), float64, summing to 1."""
    k = round(sigma * 3 * 2 + 1) | 1
    x = np.arange(k) - (k - 1) / 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def warp_crops(images: np.ndarray, index: np.ndarray, mats: np.ndarray, out_size: int, blur: np.ndarray,
               sigma: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``index`` of ``images`` warped by ``mats`` (bilinear, zero border) into ``(N, out, out, 3)`` uint8, the
    ``blur`` ones blurred with ``sigma``: OpenCV, one face at a time."""
    import cv2  # here: the device path (facelm.train_batches) trains without OpenCV

    n = len(index)
    batch = out if out is not None else np.empty((n, out_size, out_size, 3), np.uint8)
    for i in range(n):
        batch[i] = cv2.warpAffine(images[index[i]], mats[i], (out_size, out_size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT)
        if blur[i]:
            cv2.GaussianBlur(batch[i], (0, 0), sigma, dst=batch[i])
    return batch


def target_landmarks(landmarks: np.ndarray, mats: np.ndarray, flips: np.ndarray, flip_perm: np.ndarray,
                     out_size: int, aug: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks ``(N, L, 2)`` float32 in input pixels (flipped faces permuted by ``flip_perm``) and the mask
    ``(N, L)`` of points within ``outside_tol`` of the crop."""
    lm = apply_affines(mats, landmarks)
    if flips.any():
        lm[flips] = lm[flips][:, flip_perm]
    tol = (aug.outside_tol if aug is not None else AugmentConfig.outside_tol) * out_size
    lo, hi = -0.5 - tol, out_size - 0.5 + tol
    mask = np.all((lm >= lo) & (lm <= hi), axis=-1)
    return lm.astype(np.float32), mask


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
        rng, aug: draw the blur (``draw_blur``), the occluders (``draw_occluders``) and the photometric changes
            (``draw_photometric``); without them nothing is blurred, occluded or changed.
        out: optional preallocated ``(N, out, out, 3)`` uint8 buffer.

    Returns:
        (batch ``(N, out, out, 3)`` uint8 RGB, landmarks ``(N, L, 2)`` float32 in input pixels, mask ``(N, L)``
        bool of points within ``outside_tol`` of the crop).
    """
    blur = draw_blur(len(index), rng, aug)
    occ = draw_occluders(len(index), out_size, rng, aug)
    ph = draw_photometric(len(index), rng, aug)
    batch = warp_crops(images, index, mats, out_size, blur, aug.blur_sigma if aug is not None else 1.0, out)
    apply_photometric(apply_occluders(batch, occ), ph)
    lm, mask = target_landmarks(landmarks, mats, flips, flip_perm, out_size, aug)
    return batch, lm, mask
