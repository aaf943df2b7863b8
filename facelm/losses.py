"""Coordinate-regression losses of the Wing-loss paper (Feng et al., CVPR 2018, Eq. 3 and §4).

All losses work on the difference ``x = pred - target`` of landmark coordinates **in crop pixels** (the pixels of
the network's input crop: 64 px for CNN-6, 128 px for CNN-7). The unit matters: Wing's ``w`` and ``eps`` and
smooth-L1's threshold of 1 are pixel quantities. With coordinates normalised to [0, 1] they would have to be
divided by the crop size, or Wing degenerates to a scaled log/L1 loss; facelm therefore keeps the loss in crop
pixels and records ``unit="crop_px"`` in ``loss_params``.

Per coordinate (``elementwise``):

- L2: ``x**2 / 2``
- L1: ``|x|``
- smooth-L1: ``x**2 / 2`` if ``|x| < 1`` else ``|x| - 1/2``
- Wing: ``w * ln(1 + |x| / eps)`` if ``|x| < w`` else ``|x| - C`` with ``C = w - w * ln(1 + w / eps)``, which
  makes it continuous at ``|x| = w`` (one printing of the paper writes ``C = 1 - ln(1 + w/eps)``, which is wrong).

Reduction (``forward``): summed over the 2L coordinates of each sample, then averaged over the N samples of the
batch (Eq. 3), so the scale of the loss, and of the paper's learning rates, grows with L.

Example:
    >>> import torch
    >>> from facelm.losses import create_loss
    >>> loss = create_loss("wing", arch="cnn6")          # w = 10, eps = 2 crop px
    >>> pred = torch.zeros(1, 1, 2); target = torch.tensor([[[10.0, 0.0]]])
    >>> round(float(loss(pred, target)), 4)              # 10 * ln 6
    17.9176
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn as nn

__all__ = ["CoordinateLoss", "L2Loss", "L1Loss", "SmoothL1Loss", "WingLoss", "LOSSES", "WING_DEFAULTS",
           "create_loss", "loss_params"]

#: Wing (w, eps) in crop pixels per architecture (paper §7.1): CNN-6 on 64 px crops, CNN-7 on 128 px crops.
WING_DEFAULTS: dict[str | None, tuple[float, float]] = {
    "cnn6": (10.0, 2.0),
    "cnn7": (15.0, 3.0),
    "cnn6r": (10.0, 2.0),
    None: (10.0, 2.0),
}

UNIT = "crop_px"
REDUCTION = "sum_coords_mean_batch"


class CoordinateLoss(nn.Module):
    """Base class: a per-coordinate loss of ``pred - target``, summed per sample and averaged over the batch.

    Subclasses implement ``elementwise``.
    """

    name: ClassVar[str] = ""

    def elementwise(self, x: torch.Tensor) -> torch.Tensor:
        """Per-coordinate loss of the difference ``x = pred - target`` (any shape, crop pixels)."""
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of a batch.

        Args:
            pred: ``(N, L, 2)`` predicted (x, y) in crop pixels.
            target: ``(N, L, 2)`` ground-truth (x, y) in crop pixels.
            mask: optional ``(N, L)`` bool or float. A landmark whose mask is False/0 contributes exactly 0 (its
                target may then be NaN); a float mask weights each landmark's two coordinates.

        Returns:
            Scalar: per-sample sum over the 2L coordinates, averaged over the N samples (including samples whose
            landmarks are all masked out). Computed in at least float32 (bf16/fp16 inputs are upcast).
        """
        if pred.shape != target.shape or pred.dim() != 3 or pred.shape[-1] != 2:
            raise ValueError(f"pred and target must both have shape (N, L, 2), got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}")
        diff = pred - target
        if diff.dtype in (torch.float16, torch.bfloat16):
            diff = diff.float()
        weight = None
        if mask is not None:
            if mask.shape != pred.shape[:2]:
                raise ValueError(f"mask must have shape (N, L) = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
            keep = mask if mask.dtype == torch.bool else mask != 0
            # Select before the loss (not multiply after) so NaN targets of masked landmarks give no NaN, neither
            # in the value nor in the gradient.
            diff = torch.where(keep.unsqueeze(-1), diff, torch.zeros_like(diff))
            if mask.dtype != torch.bool:
                weight = mask.to(diff.dtype).unsqueeze(-1)
        per_coord = self.elementwise(diff)
        if weight is not None:
            per_coord = per_coord * weight
        return per_coord.sum(dim=(1, 2)).mean()

    def extra_repr(self) -> str:
        return f"unit={UNIT!r}"


class L2Loss(CoordinateLoss):
    """L2 loss ``x**2 / 2`` per coordinate (crop pixels); see ``CoordinateLoss.forward`` for shapes."""

    name = "l2"

    def elementwise(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * x


class L1Loss(CoordinateLoss):
    """L1 loss ``|x|`` per coordinate (crop pixels); see ``CoordinateLoss.forward`` for shapes."""

    name = "l1"

    def elementwise(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


class SmoothL1Loss(CoordinateLoss):
    """Smooth-L1 loss per coordinate: ``x**2 / 2`` if ``|x| < 1`` crop px, else ``|x| - 1/2``.

    The threshold (``beta``) is fixed at 1 crop pixel as in the paper; see ``CoordinateLoss.forward`` for shapes.
    """

    name = "smooth-l1"
    beta: float = 1.0

    def elementwise(self, x: torch.Tensor) -> torch.Tensor:
        a = x.abs()
        return torch.where(a < self.beta, 0.5 * a * a / self.beta, a - 0.5 * self.beta)


class WingLoss(CoordinateLoss):
    """Wing loss (Feng et al. 2018, Eq. 5) per coordinate, in crop pixels.

    ``wing(x) = w * ln(1 + |x| / eps)`` if ``|x| < w``, else ``|x| - C`` with ``C = w - w * ln(1 + w / eps)``.
    Its gradient magnitude is ``w / (eps + |x|)`` inside the wing (large for small errors) and 1 outside.

    Args:
        w: half-width of the non-linear region, crop pixels (> 0). Paper: 10 for CNN-6, 15 for CNN-7.
        eps: curvature of the non-linear region, crop pixels (> 0, and not tiny: the gradient near 0 is
            ``w / eps``). Paper: 2 for CNN-6, 3 for CNN-7.

    Attributes:
        w, eps: as given (floats). C: the constant that makes the loss continuous at ``|x| = w``.

    Raises:
        ValueError: if ``w`` or ``eps`` is not a finite number > 0.
    """

    name = "wing"

    def __init__(self, w: float = 10.0, eps: float = 2.0):
        super().__init__()
        w, eps = float(w), float(eps)
        if not (math.isfinite(w) and w > 0):
            raise ValueError(f"Wing w must be a finite number > 0 (crop pixels), got {w!r}")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"Wing eps must be a finite number > 0 (crop pixels), got {eps!r}; it must not be "
                             "tiny either: the gradient at small errors is w/eps, so a tiny eps makes gradients "
                             "explode")
        self.w = w
        self.eps = eps
        self.C = w - w * math.log1p(w / eps)

    def elementwise(self, x: torch.Tensor) -> torch.Tensor:
        a = x.abs()
        return torch.where(a < self.w, self.w * torch.log1p(a / self.eps), a - self.C)

    def extra_repr(self) -> str:
        return f"w={self.w}, eps={self.eps}, C={self.C:.6g}, unit={UNIT!r}"


LOSSES: dict[str, type[CoordinateLoss]] = {
    "l2": L2Loss,
    "l1": L1Loss,
    "smooth-l1": SmoothL1Loss,
    "wing": WingLoss,
}


def create_loss(name: str, *, arch: str | None = None, wing_w: float | None = None,
                wing_eps: float | None = None) -> CoordinateLoss:
    """Build a loss by name.

    Args:
        name: one of ``LOSSES``: ``"l2"``, ``"l1"``, ``"smooth-l1"``, ``"wing"``.
        arch: the architecture being trained; picks Wing's defaults (crop pixels): ``"cnn6"`` w=10, eps=2;
            ``"cnn7"`` w=15, eps=3; ``"cnn6r"`` as cnn6; None w=10, eps=2. Ignored by the other losses.
        wing_w: override Wing's w (crop pixels). Only valid with ``name="wing"``.
        wing_eps: override Wing's eps (crop pixels). Only valid with ``name="wing"``.

    Returns:
        The loss module; ``loss(pred, target, mask=None)`` takes ``(N, L, 2)`` crop-pixel tensors.

    Raises:
        KeyError: unknown ``name`` (the message lists the known ones).
        ValueError: Wing parameters given for another loss, no Wing defaults for ``arch`` and none given, or
            invalid w/eps.
    """
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r} (known losses: {', '.join(LOSSES)})")
    if name != "wing":
        if wing_w is not None or wing_eps is not None:
            raise ValueError(f"wing_w/wing_eps only apply to the 'wing' loss, not {name!r}")
        return LOSSES[name]()
    if arch in WING_DEFAULTS:
        w, eps = WING_DEFAULTS[arch]
    elif wing_w is not None and wing_eps is not None:
        w, eps = wing_w, wing_eps
    else:
        known = ", ".join(k for k in WING_DEFAULTS if k is not None)
        raise ValueError(f"no Wing defaults for arch {arch!r} (known: {known}); give both wing_w and wing_eps "
                         "in crop pixels")
    return WingLoss(w=w if wing_w is None else wing_w, eps=eps if wing_eps is None else wing_eps)


def loss_params(loss: nn.Module) -> dict:
    """JSON-serialisable description of a loss, for checkpoints and metadata.

    Args:
        loss: a module from ``create_loss`` / ``LOSSES``.

    Returns:
        ``{"name", "unit": "crop_px", "reduction": "sum_coords_mean_batch"}`` plus ``w``, ``eps``, ``C`` for
        Wing and ``beta`` for smooth-L1. ``create_loss(p["name"], wing_w=p.get("w"), wing_eps=p.get("eps"))``
        rebuilds the same loss.

    Raises:
        TypeError: if ``loss`` is not a facelm coordinate loss.
    """
    if not isinstance(loss, CoordinateLoss) or loss.name not in LOSSES:
        raise TypeError(f"not a facelm coordinate loss: {type(loss).__name__}")
    params: dict = {"name": loss.name, "unit": UNIT, "reduction": REDUCTION}
    if isinstance(loss, WingLoss):
        params.update(w=loss.w, eps=loss.eps, C=loss.C)
    elif isinstance(loss, SmoothL1Loss):
        params.update(beta=loss.beta)
    return params
