"""Heatmap losses of the heatmap-regression methods: Adaptive Wing (Wang et al., ICCV 2019), MSE, SMT-Net's
Bilateral Inhibition Cross Entropy (Yang et al., CVPRW 2019) and SMT-Net's hinge-limited residual loss.

Units and inputs
----------------
- Heatmap losses take a prediction and a target of shape ``(N, C, H, W)``. The target is a heatmap with values in
  [0, 1] (``facelm.heatmap.gaussian_heatmaps`` channels, plus AWing's boundary channel if used). The prediction
  is a heatmap in the same range for AWing and MSE (the raw network output, no activation), and **logits** for
  BICE: the network output goes through a sigmoid (as in SMT-Net, whose Eq. 8 is written on sigmoid
  probabilities), which BICE applies internally with ``binary_cross_entropy_with_logits`` for numerical
  stability. Decode a BICE model from ``sigmoid(logits)`` (or from the logits with the plain argmax decode).
- ``weight_map``: optional per-pixel weights broadcastable to ``(N, C, H, W)``, usually AWing's Weighted Loss Map
  ``facelm.heatmap.weighted_loss_map(target)`` (Eq. 5: the per-pixel loss is multiplied by ``W * M + 1``).
- ``mask``: optional ``(N, C)`` bool/float channel mask; a masked channel contributes exactly 0 (its target may be
  NaN), a float mask weights channels.

Reduction (``REDUCTION = "mean_pixels_channels_mean_batch"``): per sample, the mean of the (weighted) per-pixel
loss over all ``C * H * W`` pixels - masked channels count in the denominator with value 0 -, then the mean over
the ``N`` samples; without a mask this is the plain mean over all ``N * C * H * W`` elements (the AWing reference
implementation's ``loss.mean()``). The papers write BICE as a sum over pixels: multiply by ``C * H * W`` to get
their scale.

Per pixel, with ``y`` the target and ``y_hat`` the prediction (AWing Eq. 3 with its constants):

- AWing: ``omega * ln(1 + |(y - y_hat) / eps| ** (alpha - y))`` if ``|y - y_hat| < theta``, else
  ``A * |y - y_hat| - C`` with ``A = omega / (1 + (theta/eps)**(alpha-y)) * (alpha - y) * (theta/eps)**(alpha-y-1)
  / eps`` and ``C = theta * A - omega * ln(1 + (theta/eps)**(alpha-y))`` (A and C depend on y, so on the pixel),
  which make the loss and its first derivative continuous at ``|y - y_hat| = theta``.
- MSE: ``(y - y_hat) ** 2``.
- BICE: ``-(y * ln(p) + (1 - y) * ln(1 - p))`` with ``p = sigmoid(logit)``.

The residual loss (SMT-Net Eq. 4-5) is on coordinates in heatmap px, see ``hinge_residual_loss``.

Example:
    >>> import torch
    >>> from facelm.heatmap import gaussian_heatmaps, weighted_loss_map
    >>> from facelm.heatmap.losses import create_heatmap_loss
    >>> target = gaussian_heatmaps(torch.tensor([[[8.0, 8.0]]]), 16, sigma=1.0)     # (1, 1, 16, 16)
    >>> loss = create_heatmap_loss("awing")                                          # alpha=2.1, omega=14, ...
    >>> float(loss(target, target, weight_map=weighted_loss_map(target)))
    0.0
    >>> loss.params()["theta"]
    0.5
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AWING_DEFAULTS", "HEATMAP_LOSSES", "REDUCTION", "AdaptiveWingLoss", "BICELoss", "HeatmapLoss",
           "HeatmapMSELoss", "HingeResidualLoss", "create_heatmap_loss", "hinge_residual_loss"]

#: Paper values (AWing §4.2): alpha = 2.1, omega = 14, epsilon = 1, theta = 0.5.
AWING_DEFAULTS: dict[str, float] = {"alpha": 2.1, "omega": 14.0, "epsilon": 1.0, "theta": 0.5}
REDUCTION = "mean_pixels_channels_mean_batch"
RESIDUAL_REDUCTION = "sum_landmarks_mean_batch"


def _finite(value: float, what: str, *, positive: bool = True) -> float:
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise ValueError(f"{what} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return v


def _channel_mask(mask: torch.Tensor, shape: tuple[int, ...], what: str = "(N, C)") -> torch.Tensor:
    if mask.shape != shape:
        raise ValueError(f"mask must have shape {what} = {shape}, got {tuple(mask.shape)}")
    return mask if mask.dtype == torch.bool else mask != 0


class HeatmapLoss(nn.Module):
    """Base class: a per-pixel loss, optionally weighted, averaged over pixels and channels, then over the batch.

    Subclasses implement ``elementwise(pred, target)``.
    """

    name: ClassVar[str] = ""
    #: What the prediction is: ``"heatmap"`` (values ~[0, 1]) or ``"logits"`` (sigmoid applied by the loss).
    input_kind: ClassVar[str] = "heatmap"

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-pixel loss, same shape as the inputs."""
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of a batch.

        Args:
            pred: ``(N, C, H, W)`` prediction (heatmap values, or logits for BICE).
            target: ``(N, C, H, W)`` target heatmaps in [0, 1].
            weight_map: optional per-pixel weights broadcastable to ``(N, C, H, W)`` (e.g.
                ``weighted_loss_map(target)``).
            mask: optional ``(N, C)`` bool/float channel mask (see module docstring).

        Returns:
            Scalar: mean over ``C * H * W`` per sample, then mean over ``N`` (see module docstring). Computed in
            at least float32.
        """
        if pred.shape != target.shape or pred.dim() != 4:
            raise ValueError(f"pred and target must both have shape (N, C, H, W), got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}")
        if pred.dtype in (torch.float16, torch.bfloat16):
            pred = pred.float()
        if target.dtype != pred.dtype:
            target = target.to(pred.dtype)
        keep = None
        if mask is not None:
            keep = _channel_mask(mask, tuple(pred.shape[:2]))[..., None, None]
            # Select before the loss (not multiply after) so NaN targets of masked channels give no NaN gradient.
            target = torch.where(keep, target, torch.zeros_like(target))
        per_pixel = self.elementwise(pred, target)
        if weight_map is not None:
            if torch.broadcast_shapes(weight_map.shape, per_pixel.shape) != per_pixel.shape:
                raise ValueError(f"weight_map of shape {tuple(weight_map.shape)} does not broadcast to "
                                 f"{tuple(per_pixel.shape)}")
            per_pixel = per_pixel * weight_map.to(per_pixel.dtype)
        if keep is not None:
            per_pixel = torch.where(keep, per_pixel, torch.zeros_like(per_pixel))
            if mask.dtype != torch.bool:
                per_pixel = per_pixel * mask.to(per_pixel.dtype)[..., None, None]
        return per_pixel.mean(dim=(1, 2, 3)).mean()

    def params(self) -> dict[str, Any]:
        """JSON-serialisable description for checkpoints: name, input kind, reduction and hyper-parameters.

        ``create_heatmap_loss(p["name"], **{k: p[k] for k in AWING_DEFAULTS if k in p})`` rebuilds the loss.
        """
        return {"name": self.name, "input": self.input_kind, "reduction": REDUCTION}


class AdaptiveWingLoss(HeatmapLoss):
    """Adaptive Wing loss (Wang et al., ICCV 2019, Eq. 3) per heatmap pixel; see the module docstring.

    Near 0 the loss behaves like ``|y - y_hat| ** (alpha - y)``: Wing-like (large gradients on small errors) on
    foreground pixels (``y`` near 1, exponent ~1.1), MSE-like on background pixels (``y`` = 0, exponent 2.1). The
    gradient at ``y_hat = y`` is 0. ``A`` and ``C`` are computed per pixel from ``y``.

    Args:
        alpha: exponent base, > 2 so that ``alpha - y > 1`` for every ``y`` in [0, 1] (the loss is then smooth at
            0; the paper: "alpha has to be slightly larger than 2"). Paper: 2.1.
        omega: scale (> 0). Paper: 14.
        epsilon: error scale (> 0, heatmap-value units). Paper: 1.
        theta: threshold between the non-linear and linear parts, in heatmap-value units (> 0). Paper: 0.5.

    Raises:
        ValueError: out-of-range parameters.
    """

    name = "awing"

    def __init__(self, alpha: float = 2.1, omega: float = 14.0, epsilon: float = 1.0, theta: float = 0.5):
        super().__init__()
        self.alpha = _finite(alpha, "AWing alpha")
        if self.alpha <= 2.0:
            raise ValueError(f"AWing alpha must be > 2 (so that alpha - y > 1 for targets y in [0, 1] and the "
                             f"loss is smooth at zero error), got {alpha!r}")
        self.omega = _finite(omega, "AWing omega")
        self.epsilon = _finite(epsilon, "AWing epsilon")
        self.theta = _finite(theta, "AWing theta")

    def coefficients(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel ``(A, C)`` for target values ``y`` (any shape)."""
        power = self.alpha - target
        ratio = self.theta / self.epsilon
        ratio_p = torch.pow(ratio, power)
        a = self.omega * power * torch.pow(ratio, power - 1.0) / (self.epsilon * (1.0 + ratio_p))
        c = self.theta * a - self.omega * torch.log1p(ratio_p)
        return a, c

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = (target - pred).abs()
        power = self.alpha - target
        a, c = self.coefficients(target)
        # |d/eps| ** p with d = 0 guarded so that no gradient (w.r.t. the exponent) becomes 0 * log(0) = NaN.
        pos = diff > 0
        base = torch.where(pos, diff, torch.ones_like(diff)) / self.epsilon
        powered = torch.where(pos, torch.pow(base, power), torch.zeros_like(diff))
        small = self.omega * torch.log1p(powered)
        large = a * diff - c
        return torch.where(diff < self.theta, small, large)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "alpha": self.alpha, "omega": self.omega, "epsilon": self.epsilon,
                "theta": self.theta}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, omega={self.omega}, epsilon={self.epsilon}, theta={self.theta}"


class HeatmapMSELoss(HeatmapLoss):
    """Mean squared error ``(y - y_hat) ** 2`` per heatmap pixel (the usual hourglass baseline, AWing Table 7)."""

    name = "mse"

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = pred - target
        return d * d


class BICELoss(HeatmapLoss):
    """SMT-Net's Bilateral Inhibition Cross Entropy (Eq. 8) per heatmap pixel, on **logits**.

    ``-(y * ln(sigmoid(z)) + (1 - y) * ln(1 - sigmoid(z)))`` for logit ``z`` and target ``y``: a binary cross
    entropy on every pixel, so zero-target pixels are penalised too (the "bilateral inhibition"), unlike a
    cross entropy ``-y * ln(p)`` which ignores them. Computed with ``binary_cross_entropy_with_logits`` (stable for
    large ``|z|``). Its minimum over ``z`` is at ``sigmoid(z) = y`` but is not 0 for ``0 < y < 1`` (it is the
    entropy of ``y``).
    """

    name = "bice"
    input_kind = "logits"

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(pred, target, reduction="none")


def hinge_residual_loss(pred_res: torch.Tensor, target_res: torch.Tensor, mask: torch.Tensor | None = None,
                        theta: float = 0.5) -> torch.Tensor:
    """SMT-Net's coordinate-branch loss (Eq. 4-5): ``L2(t_c - p_c) + sum_l max(0, |p_lx| - theta) +
    max(0, |p_ly| - theta)``.

    The hinge term keeps the residual branch's output within ``[-theta, theta]`` so it refines the heatmap argmax
    instead of dominating it. ``L2`` is facelm's L2 (``facelm.losses.L2Loss``): ``x ** 2 / 2`` per
    coordinate, summed over the 2L coordinates (the paper does not define its L2 further).

    Args:
        pred_res: ``(N, L, 2)`` output of the coordinate branch, heatmap px.
        target_res: ``(N, L, 2)`` target residuals ``t_c`` (``facelm.heatmap.residual_targets``), heatmap px.
        mask: optional ``(N, L)`` bool/float; a masked landmark contributes exactly 0 to both terms (its target
            may be NaN); a float mask weights landmarks.
        theta: hinge threshold in heatmap px (paper: 0.5, Table 2).

    Returns:
        Scalar: per sample, the L2 term plus the hinge term, each summed over landmarks and both axes; then the
        mean over the N samples (``"sum_landmarks_mean_batch"``).
    """
    theta = _finite(theta, "hinge theta", positive=False)
    if pred_res.shape != target_res.shape or pred_res.dim() != 3 or pred_res.shape[-1] != 2:
        raise ValueError(f"pred_res and target_res must both have shape (N, L, 2), got {tuple(pred_res.shape)} "
                         f"and {tuple(target_res.shape)}")
    pred = pred_res.float() if pred_res.dtype in (torch.float16, torch.bfloat16) else pred_res
    target = target_res.to(pred.dtype)
    weight = None
    if mask is not None:
        keep = _channel_mask(mask, tuple(pred.shape[:2]), "(N, L)").unsqueeze(-1)
        pred = torch.where(keep, pred, torch.zeros_like(pred))
        target = torch.where(keep, target, torch.zeros_like(target))
        if mask.dtype != torch.bool:
            weight = mask.to(pred.dtype).unsqueeze(-1)
    diff = target - pred
    per_coord = 0.5 * diff * diff + torch.relu(pred.abs() - theta)
    if weight is not None:
        per_coord = per_coord * weight
    return per_coord.sum(dim=(1, 2)).mean()


class HingeResidualLoss(nn.Module):
    """Module form of ``hinge_residual_loss`` (SMT-Net Eq. 4-5), with ``name`` and ``params()`` for checkpoints.

    Args:
        theta: hinge threshold in heatmap px (paper: 0.5).
    """

    name: ClassVar[str] = "hinge-residual"

    def __init__(self, theta: float = 0.5):
        super().__init__()
        self.theta = _finite(theta, "hinge theta", positive=False)

    def forward(self, pred_res: torch.Tensor, target_res: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """See ``hinge_residual_loss``."""
        return hinge_residual_loss(pred_res, target_res, mask=mask, theta=self.theta)

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "theta": self.theta, "unit": "heatmap_px", "l2": "half_squared",
                "reduction": RESIDUAL_REDUCTION}

    def extra_repr(self) -> str:
        return f"theta={self.theta}"


_HEATMAP_LOSS_CLASSES: dict[str, type[HeatmapLoss]] = {
    "awing": AdaptiveWingLoss,
    "mse": HeatmapMSELoss,
    "bice": BICELoss,
}
#: Names accepted by ``create_heatmap_loss``.
HEATMAP_LOSSES: tuple[str, ...] = tuple(_HEATMAP_LOSS_CLASSES)


def create_heatmap_loss(name: str, **kwargs: float) -> HeatmapLoss:
    """Build a heatmap loss by name.

    Args:
        name: one of ``HEATMAP_LOSSES``: ``"awing"``, ``"mse"``, ``"bice"``.
        **kwargs: hyper-parameters, only for ``"awing"`` (``alpha``, ``omega``, ``epsilon``, ``theta``; defaults
            ``AWING_DEFAULTS``).

    Returns:
        The loss module, called as ``loss(pred, target, weight_map=None, mask=None)``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        ValueError: hyper-parameters for a loss that has none, unknown or out-of-range hyper-parameters.
    """
    if name not in _HEATMAP_LOSS_CLASSES:
        raise KeyError(f"unknown heatmap loss {name!r} (known: {', '.join(HEATMAP_LOSSES)})")
    cls = _HEATMAP_LOSS_CLASSES[name]
    if name != "awing":
        if kwargs:
            raise ValueError(f"heatmap loss {name!r} takes no parameters, got {sorted(kwargs)}")
        return cls()
    unknown = set(kwargs) - set(AWING_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown AWing parameter(s) {sorted(unknown)} (known: {', '.join(AWING_DEFAULTS)})")
    return cls(**kwargs)
