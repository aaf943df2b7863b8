"""Heatmap encoding and decoding (targets, coordinate conversion, argmax/sub-pixel decoding); see
``facelm.heatmap`` for the conventions and units."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from facelm.schemes import LandmarkScheme, get_scheme

__all__ = ["REFINE_EPS", "REFINE_MAX_STEP", "boundary_heatmap", "crop_to_heatmap", "decode_heatmaps",
           "gaussian_heatmaps", "heatmap_argmax", "heatmap_to_crop", "weighted_loss_map"]

ArrayOrTensor = torch.Tensor | np.ndarray
Size = int | tuple[int, int]

#: Heatmap values are clamped to at least this before the log in ``decode_heatmaps(refine=True)``.
REFINE_EPS = 1e-10
#: Largest sub-pixel step (heatmap px, per axis) of ``decode_heatmaps(refine=True)``.
REFINE_MAX_STEP = 0.5


# --- coordinate conversion ----------------------------------------------------------------------------------

def _positive_size(value: float, what: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{what} must be a finite number > 0 (pixels), got {value!r}")
    return v


def crop_to_heatmap(points: ArrayOrTensor, input_size: float, heatmap_size: float) -> ArrayOrTensor:
    """Convert points from crop pixels to heatmap pixels: ``(p + 0.5) * H / S - 0.5``.

    Args:
        points: tensor or numpy array of any shape (every element is an x or y coordinate, crop px).
        input_size: side ``S`` of the square input crop (crop px), e.g. 256.
        heatmap_size: side ``H`` of the square heatmap (heatmap px), e.g. 64.

    Returns:
        Same type and shape, in heatmap px. The crop centre ``S/2 - 0.5`` maps to the heatmap centre ``H/2 - 0.5``.

    Raises:
        ValueError: if a size is not a finite number > 0.
    """
    s = _positive_size(input_size, "input_size")
    h = _positive_size(heatmap_size, "heatmap_size")
    if not isinstance(points, torch.Tensor):
        points = np.asarray(points, dtype=np.float64)
    return (points + 0.5) * (h / s) - 0.5


def heatmap_to_crop(points: ArrayOrTensor, input_size: float, heatmap_size: float) -> ArrayOrTensor:
    """Inverse of ``crop_to_heatmap``: heatmap px -> crop px, ``(p + 0.5) * S / H - 0.5``.

    Args and errors as ``crop_to_heatmap``.
    """
    s = _positive_size(input_size, "input_size")
    h = _positive_size(heatmap_size, "heatmap_size")
    if not isinstance(points, torch.Tensor):
        points = np.asarray(points, dtype=np.float64)
    return (points + 0.5) * (s / h) - 0.5


# --- helpers ------------------------------------------------------------------------------------------------

def _size_hw(size: Size) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"heatmap size must be an int or (height, width), got {size!r}")
        h, w = int(size[0]), int(size[1])
    else:
        h = w = int(size)
    if h < 1 or w < 1:
        raise ValueError(f"heatmap size must be >= 1 pixel, got {size!r}")
    return h, w


def _float_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_points(points: torch.Tensor, what: str = "points") -> None:
    if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[-1] != 2:
        shape = tuple(points.shape) if hasattr(points, "shape") else type(points).__name__
        raise ValueError(f"{what} must be a tensor of shape (N, L, 2) (x, y in heatmap px), got {shape}")


def _valid_points(points: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(N, L) bool: finite and not masked out."""
    valid = torch.isfinite(points).all(dim=-1)
    if mask is not None:
        mask = torch.as_tensor(mask, device=points.device)
        if mask.shape != points.shape[:2]:
            raise ValueError(f"mask must have shape (N, L) = {tuple(points.shape[:2])}, got {tuple(mask.shape)}")
        valid = valid & (mask if mask.dtype == torch.bool else mask != 0)
    return valid


def _sigma_tensor(sigma: float | torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    if isinstance(sigma, torch.Tensor):
        sig = sigma.to(device=device, dtype=dtype)
        try:
            sig = torch.broadcast_to(sig, shape)
        except RuntimeError as e:
            raise ValueError(f"sigma of shape {tuple(sigma.shape)} does not broadcast to {shape}") from e
        if not bool(torch.isfinite(sig).all()) or bool((sig <= 0).any()):
            raise ValueError("sigma must be finite and > 0 (heatmap px)")
        return sig
    s = float(sigma)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"sigma must be a finite number > 0 (heatmap px), got {sigma!r}")
    return torch.full(shape, s, dtype=dtype, device=device)


# --- encoding -----------------------------------------------------------------------------------------------

def gaussian_heatmaps(points: torch.Tensor, size: Size, sigma: float | torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """One unnormalised Gaussian ``exp(-d**2 / (2 sigma**2))`` per landmark, centred on the exact sub-pixel point.

    The peak value is 1 at the point itself (so a pixel's value is 1 only when the point is on its centre). The
    Gaussian is not truncated: every pixel gets its exact value (below 1e-4 beyond ~4.3 sigma). Computed as the
    outer product of a 1-D Gaussian over y and one over x.

    Args:
        points: ``(N, L, 2)`` (x, y) in heatmap px (see ``crop_to_heatmap``). Points may lie outside the map (their
            visible tail is drawn).
        size: heatmap side ``H`` (square) or ``(H, W)``.
        sigma: standard deviation in heatmap px: a float, or a tensor broadcastable to ``(N, L)`` (per sample
            and/or per landmark, e.g. from ``sigma_schedule``). Must be > 0.
        mask: optional ``(N, L)`` bool/float; landmarks with mask False/0, and non-finite points (NaN for
            "not annotated"), get an all-zero channel.

    Returns:
        ``(N, L, H, W)`` float32 (float64 if ``points`` is float64), values in [0, 1].

    Raises:
        ValueError: bad shapes, size or sigma.
    """
    _check_points(points)
    h, w = _size_hw(size)
    dtype = _float_dtype(points)
    pts = points.to(dtype)
    valid = _valid_points(pts, mask)
    pts = torch.where(valid.unsqueeze(-1), pts, torch.zeros_like(pts))
    sig = _sigma_tensor(sigma, tuple(pts.shape[:2]), dtype, pts.device)
    coef = (-0.5 / (sig * sig)).unsqueeze(-1)                                       # (N, L, 1)
    xs = torch.arange(w, dtype=dtype, device=pts.device)
    ys = torch.arange(h, dtype=dtype, device=pts.device)
    gx = torch.exp((xs - pts[..., 0:1]) ** 2 * coef)                                # (N, L, W)
    gy = torch.exp((ys - pts[..., 1:2]) ** 2 * coef) * valid.unsqueeze(-1).to(dtype)  # (N, L, H)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def _boundary_segments(scheme: LandmarkScheme) -> tuple[list[int], list[int]]:
    a_idx: list[int] = []
    b_idx: list[int] = []
    for name, line in scheme.boundaries.items():
        idx = [int(i) for i in line]
        if not idx or any(not 0 <= i < scheme.num_landmarks for i in idx):
            raise ValueError(f"scheme {scheme.name}: boundary {name!r} is empty or has indices outside "
                             f"0..{scheme.num_landmarks - 1}")
        if len(idx) == 1:                       # a one-landmark "polyline" is drawn as a point
            idx = idx * 2
        a_idx += idx[:-1]
        b_idx += idx[1:]
    return a_idx, b_idx


def boundary_heatmap(points: torch.Tensor, scheme: LandmarkScheme | str, size: Size,
                     sigma: float | torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """AWing's boundary channel: ``exp(-d**2 / (2 sigma**2))`` of the distance to the nearest facial boundary.

    Every polyline of ``scheme.boundaries`` joins consecutive landmarks with straight segments (closed curves
    repeat their first index, as the built-in eyes and lips do). ``d`` is each pixel's Euclidean distance to the
    nearest segment of any boundary, so the map is the pixel-wise maximum over all boundaries (AWing §7.1:
    "different boundary lines are merged into one channel by selecting maximum values on each pixel"). Pixels on
    a segment have value 1, pixels at distance sigma ``exp(-1/2)``.

    Choice where the paper is silent: AWing follows LAB (Wu et al. 2018), which interpolates the landmarks with
    splines before the distance transform; facelm uses straight segments (exact, and close to a spline for the
    dense 68/98-point schemes).

    Args:
        points: ``(N, L, 2)`` (x, y) in heatmap px, with ``L == scheme.num_landmarks``.
        scheme: a ``LandmarkScheme`` or its name (e.g. ``"300w68"``, ``"wflw98"``, ``"aflw19"``).
        size: heatmap side ``H`` or ``(H, W)``.
        sigma: heatmap px, float or tensor broadcastable to ``(N,)``. Must be > 0.
        mask: optional ``(N, L)``; segments with a masked-out or non-finite end point are not drawn.

    Returns:
        ``(N, 1, H, W)`` float32 (float64 for float64 points), values in [0, 1].

    Raises:
        ValueError: the scheme has no boundaries, ``L`` does not match it, or bad size/sigma.

    Memory is ``O(N * segments * H * W)`` (63 segments for 300w68: about 1 MB per sample at 64 x 64).
    """
    sch = get_scheme(scheme)
    if not sch.boundaries:
        raise ValueError(f"scheme {sch.name!r} defines no boundaries, so it has no boundary heatmap (add "
                         "'boundaries' - named landmark polylines - to the scheme)")
    _check_points(points)
    if points.shape[1] != sch.num_landmarks:
        raise ValueError(f"points have {points.shape[1]} landmarks but scheme {sch.name!r} has "
                         f"{sch.num_landmarks}")
    h, w = _size_hw(size)
    dtype = _float_dtype(points)
    pts = points.to(dtype)
    n = pts.shape[0]
    dev = pts.device
    valid = _valid_points(pts, mask)
    pts = torch.where(valid.unsqueeze(-1), pts, torch.zeros_like(pts))
    sig = _sigma_tensor(sigma, (n,), dtype, dev)

    a_list, b_list = _boundary_segments(sch)
    a_idx = torch.tensor(a_list, dtype=torch.long, device=dev)
    b_idx = torch.tensor(b_list, dtype=torch.long, device=dev)
    a = pts[:, a_idx]                                                # (N, S, 2)
    ab = pts[:, b_idx] - a                                           # (N, S, 2)
    seg_ok = valid[:, a_idx] & valid[:, b_idx]                       # (N, S)
    len2 = (ab * ab).sum(-1)                                         # (N, S)
    inv_len2 = torch.where(len2 > 0, 1.0 / torch.where(len2 > 0, len2, torch.ones_like(len2)),
                           torch.zeros_like(len2))

    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype, device=dev), torch.arange(w, dtype=dtype, device=dev),
                            indexing="ij")
    px = xs.reshape(1, 1, -1)                                        # (1, 1, P)
    py = ys.reshape(1, 1, -1)
    apx = px - a[..., 0:1]                                           # (N, S, P)
    apy = py - a[..., 1:2]
    abx, aby = ab[..., 0:1], ab[..., 1:2]                            # (N, S, 1)
    t = ((apx * abx + apy * aby) * inv_len2.unsqueeze(-1)).clamp(0.0, 1.0)  # projection on the segment
    dx = apx - t * abx
    dy = apy - t * aby
    d2 = dx * dx + dy * dy
    d2 = torch.where(seg_ok.unsqueeze(-1), d2, torch.full_like(d2, math.inf))
    d2min = d2.amin(dim=1)                                           # (N, P)
    out = torch.exp(-d2min * (0.5 / (sig * sig)).unsqueeze(-1))
    return out.reshape(n, 1, h, w)


def weighted_loss_map(target: torch.Tensor, threshold: float = 0.2, weight: float = 10.0) -> torch.Tensor:
    """AWing's Weighted Loss Map (Eq. 4-5): ``weight * M + 1``.

    ``M = 1`` where the 3 x 3 grey dilation of the target (a 3 x 3 max filter, i.e. ``max_pool2d`` with kernel 3,
    stride 1, padding 1) is ``>= threshold``, else 0: foreground pixels and the "difficult background" pixels
    next to them get weight ``weight + 1`` (11 with the paper's W = 10), all others 1. Multiply the per-pixel
    loss by it (the heatmap losses take it as ``weight_map``).

    Args:
        target: ``(N, C, H, W)`` ground-truth heatmaps (values in [0, 1]).
        threshold: binarisation threshold on the dilated target (paper: 0.2).
        weight: W (paper: 10).

    Returns:
        ``(N, C, H, W)`` weights, same dtype as ``target``, no gradient.
    """
    if not isinstance(target, torch.Tensor) or target.dim() != 4:
        raise ValueError(f"target must be a (N, C, H, W) tensor, got {getattr(target, 'shape', type(target))}")
    with torch.no_grad():
        t = target if target.is_floating_point() else target.float()
        dilated = F.max_pool2d(t, kernel_size=3, stride=1, padding=1)
        m = (dilated >= threshold).to(t.dtype)
        return m * float(weight) + 1.0


# --- decoding -----------------------------------------------------------------------------------------------

def _check_heatmaps(heatmaps: torch.Tensor) -> None:
    if not isinstance(heatmaps, torch.Tensor) or heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must be a (N, L, H, W) tensor, got {getattr(heatmaps, 'shape', heatmaps)}")
    if not torch.jit.is_tracing() and (heatmaps.shape[-1] < 3 or heatmaps.shape[-2] < 3):
        raise ValueError(f"heatmaps must be at least 3 x 3 pixels, got {tuple(heatmaps.shape[-2:])}")


def _argmax(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flat index, x, y), each (N, L, 1) int64; ties go to the first pixel in row-major order."""
    w = h.shape[-1]
    idx = h.flatten(2).argmax(dim=-1, keepdim=True)
    y = torch.div(idx, w, rounding_mode="floor")
    x = idx - y * w
    return idx, x, y


def heatmap_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Integer location of each channel's maximum, ``(N, L, H, W) -> (N, L, 2)`` float (x, y) in heatmap px.

    Ties go to the first pixel in row-major order (lowest y, then lowest x), as ``torch.argmax`` and ONNX
    ``ArgMax`` do. This is SMT-Net's coarse output ``t_h`` (Eq. 3); add the coordinate branch's residual to it.
    """
    _check_heatmaps(heatmaps)
    _, x, y = _argmax(heatmaps)
    dtype = heatmaps.dtype if heatmaps.is_floating_point() else torch.float32
    return torch.cat([x, y], dim=-1).to(dtype)


def _pad_x(t: torch.Tensor) -> torch.Tensor:
    """Zero column on both sides (Concat in ONNX; F.pad exports to a longer graph)."""
    z = torch.zeros_like(t[..., :, :1])
    return torch.cat([z, t, z], dim=-1)


def _pad_y(t: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(t[..., :1, :])
    return torch.cat([z, t, z], dim=-2)


def _gather(maps: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Values of (N, L, H, W) maps at flat indices (N, L, 1) -> (N, L, 1)."""
    return maps.flatten(2).gather(-1, idx)


def decode_heatmaps(heatmaps: torch.Tensor, refine: bool = False) -> torch.Tensor:
    """Landmark coordinates from heatmaps, ``(N, L, H, W) -> (N, L, 2)`` (x, y) in heatmap px.

    ``refine=False`` (AWing §7.1, Newell et al.): argmax per channel, then shift a quarter pixel toward the higher
    of the two neighbours on each axis, ``x + 0.25 * sign(h[y, x+1] - h[y, x-1])`` (same for y); no shift on an
    axis where the argmax is on the border or the two neighbours are equal. For a Gaussian target the error is at
    most 0.25 px per axis away from the border.

    ``refine=True`` (DARK, Zhang et al. 2020, without its blur step): second-order Taylor expansion of
    ``log(h)`` at the argmax, ``mu = m - Hess^-1 grad`` with central finite differences over the 3 x 3
    neighbourhood; the step is clamped to +-0.5 px per axis. Exact (up to rounding) for an untruncated Gaussian,
    e.g. ``gaussian_heatmaps`` targets. Where it does not apply - argmax on the border, or a Hessian that is not
    negative definite (flat top) - the quarter-pixel result is returned. It needs positive heatmap values
    (values are clamped to ``REFINE_EPS`` before the log): for a BICE model pass ``sigmoid(logits)``. The plain
    decode is unchanged by the sigmoid (it is monotonic), so it can take logits directly.

    All-zero (masked) channels decode to (0, 0). Exportable to ONNX (opset 17, TorchScript exporter): the
    graph uses ArgMax, GatherElements, Concat, Sign, Log, Where and Clip, with no data-dependent control flow.

    Args:
        heatmaps: ``(N, L, H, W)`` with ``H, W >= 3``.
        refine: use the sub-pixel refinement (see above).

    Returns:
        ``(N, L, 2)`` float (the heatmaps' dtype, float32 for integer input); convert to crop px with
        ``heatmap_to_crop``.
    """
    _check_heatmaps(heatmaps)
    h = heatmaps if heatmaps.is_floating_point() else heatmaps.float()
    idx, x, y = _argmax(h)
    xy = torch.cat([x, y], dim=-1).to(h.dtype)                                   # (N, L, 2)

    # Neighbour differences h[y, x+1] - h[y, x-1] (and along y) as full maps, zero on the border, then gathered.
    diff_x = _pad_x(h[..., :, 2:] - h[..., :, :-2])
    diff_y = _pad_y(h[..., 2:, :] - h[..., :-2, :])
    shift = torch.cat([torch.sign(_gather(diff_x, idx)), torch.sign(_gather(diff_y, idx))], dim=-1)
    quarter = xy + 0.25 * shift
    if not refine:
        return quarter

    lg = torch.log(torch.clamp(h, min=REFINE_EPS))
    dx = _gather(_pad_x(0.5 * (lg[..., :, 2:] - lg[..., :, :-2])), idx)
    dy = _gather(_pad_y(0.5 * (lg[..., 2:, :] - lg[..., :-2, :])), idx)
    dxx = _gather(_pad_x(lg[..., :, 2:] - 2.0 * lg[..., :, 1:-1] + lg[..., :, :-2]), idx)
    dyy = _gather(_pad_y(lg[..., 2:, :] - 2.0 * lg[..., 1:-1, :] + lg[..., :-2, :]), idx)
    dxy = _gather(_pad_y(_pad_x(0.25 * (lg[..., 2:, 2:] - lg[..., 2:, :-2] - lg[..., :-2, 2:]
                                                + lg[..., :-2, :-2]))), idx)
    det = dxx * dyy - dxy * dxy
    hh, ww = h.shape[-2], h.shape[-1]
    interior = (x > 0) & (x < ww - 1) & (y > 0) & (y < hh - 1)
    ok = interior & (dxx < 0) & (det > 0)                                       # negative definite Hessian
    det_safe = torch.where(ok, det, torch.ones_like(det))
    ox = -(dyy * dx - dxy * dy) / det_safe
    oy = -(dxx * dy - dxy * dx) / det_safe
    step = torch.clamp(torch.cat([ox, oy], dim=-1), -REFINE_MAX_STEP, REFINE_MAX_STEP)
    return torch.where(ok, xy + step, quarter)
