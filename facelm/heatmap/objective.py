"""Training objective of the heatmap family (AWing hourglass, SMT-Net), used by ``facelm.train``.

The training loop is shared with CNN-6/7: the same crops, augmentation, landmarks in crop pixels, validation
(``model(x)`` decodes to crop pixels) and checkpoints. Only the loss differs: the landmarks of a batch are turned
into target heatmaps on the fly, on the training device, and every stack is supervised (intermediate
supervision):

* heatmaps: ``awing`` (Adaptive Wing), ``mse`` or ``bice`` (sigmoid cross-entropy on logits) against Gaussian
  targets of width ``sigma`` (heatmap px), optionally weighted by AWing's weighted loss map (``loss_map``:
  ``W * M + 1`` with ``M`` the 3x3-dilated target >= 0.2, W = 10);
* boundary channel (``boundary`` models, AWing): ``boundary_heatmap`` of the scheme's landmark curves is the
  (L+1)-th target channel, in the same loss (the mean over all L + 1 channels, so the boundary weighs one channel,
  not as much as all landmarks together);
* residual branch (``smt`` models): SMT-Net's hinge-limited L2 loss on the sub-pixel residual between the true
  point and the argmax of the stack's current heatmap (the paper's definition, Eq. 3), theta = 0.5 heatmap px;
* sigma follows ``sigma_schedule``: ``fixed``, ``temporal`` (SMT-Net: shrinks by ``delta`` per training phase) or
  ``spatial`` (shrinks by ``delta`` per stack).

The total is the sum over stacks of (heatmap loss + boundary loss + residual loss).
"""

from __future__ import annotations

import math

import torch

from facelm.heatmap import (
    boundary_heatmap,
    crop_to_heatmap,
    gaussian_heatmaps,
    residual_targets,
    sigma_schedule,
    weighted_loss_map,
)
from facelm.heatmap.losses import HingeResidualLoss, create_heatmap_loss

__all__ = ["HeatmapObjective", "is_heatmap_model", "TrainView", "BICE_PRIOR"]

#: Foreground prior for the BICE heads' bias initialisation (a 7x7 Gaussian on a 32 x 32 map is ~5% of the pixels;
#: most of it well below 1, so ~1% "on").
BICE_PRIOR = 0.01


def is_heatmap_model(model: torch.nn.Module) -> bool:
    return getattr(model, "family", None) == "heatmap"


class TrainView(torch.nn.Module):
    """Wraps a heatmap model so that ``forward`` is its ``forward_train`` (what DDP must wrap)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict:
        return self.model.forward_train(x)


class HeatmapObjective:
    """Callable ``(outputs of forward_train, landmarks (N, L, 2) crop px, mask (N, L), progress) -> loss``."""

    def __init__(self, loss: str, model: torch.nn.Module, scheme, *, sigma: float, schedule: str,
                 delta: float = 1.0, loss_map: bool = False, map_weight: float = 10.0, theta: float = 0.5):
        self.loss = create_heatmap_loss(loss)
        self.scheme = scheme
        self.input_size = int(model.input_size)
        self.size = int(model.heatmap_size)
        self.stacks = int(model.stacks)
        self.boundary = bool(getattr(model, "boundary", False))
        self.residual = bool(getattr(model, "residual", False))
        self.sigma, self.schedule, self.delta = float(sigma), schedule, float(delta)
        self.loss_map, self.map_weight = bool(loss_map), float(map_weight)
        self.residual_loss = HingeResidualLoss(theta) if self.residual else None
        sigma_schedule(schedule, 0.0, 0, self.stacks, self.sigma, self.delta)  # validate now, not mid-run

    def init_model(self, model: torch.nn.Module) -> None:
        """Loss-specific initialisation of a new model: for BICE (sigmoid outputs) the heads' biases start at the
        logit of the foreground prior (``BICE_PRIOR``), the RetinaNet "prior probability" initialisation (Lin et
        al., 2017); otherwise every pixel starts at sigmoid(0) = 0.5 and the first hundreds of steps only push
        the ~99% background down. AWing and MSE regress values in [0, 1] directly and keep a zero bias."""
        if self.loss.name != "bice":
            return
        bias = -math.log((1 - BICE_PRIOR) / BICE_PRIOR)
        with torch.no_grad():
            for head in getattr(model, "heads", []):
                if head.bias is not None:
                    head.bias.fill_(bias)

    def sigmas(self, progress: float) -> list[float]:
        return [sigma_schedule(self.schedule, min(max(progress, 0.0), 1.0), i, self.stacks, self.sigma, self.delta)
                for i in range(self.stacks)]

    def __call__(self, out: dict, landmarks: torch.Tensor, mask: torch.Tensor, progress: float) -> torch.Tensor:
        pts = crop_to_heatmap(landmarks.float(), self.input_size, self.size)
        total = landmarks.new_zeros((), dtype=torch.float32)
        if self.boundary:  # AWing's boundary map is output channel L + 1: one loss, the mean over L + 1 channels
            mask = torch.cat([mask.bool(), torch.ones_like(mask[:, :1], dtype=torch.bool)], dim=1)
        targets: dict[float, tuple] = {}  # per distinct sigma: (target, weight map)
        for i, sigma in enumerate(self.sigmas(progress)):
            if sigma not in targets:
                target = gaussian_heatmaps(pts, self.size, sigma, mask[:, :pts.shape[1]])
                if self.boundary:
                    bnd = boundary_heatmap(pts, self.scheme, self.size, sigma, mask[:, :pts.shape[1]])
                    target = torch.cat([target, bnd], dim=1)
                targets[sigma] = (target, weighted_loss_map(target, weight=self.map_weight) if self.loss_map
                                  else None)
            target, wmap = targets[sigma]
            hm = out["heatmaps"][i]
            pred = torch.cat([hm, out["boundary"][i]], dim=1) if self.boundary else hm
            total = total + self.loss(pred.float(), target, weight_map=wmap, mask=mask)
            if self.residual_loss is not None:
                res_t = residual_targets(pts, self.size, heatmaps=hm.detach())
                total = total + self.residual_loss(out["residual"][i].float(), res_t, mask[:, :pts.shape[1]])
        return total

    def params(self) -> dict:
        return {**self.loss.params(), "family": "heatmap", "unit": "heatmap", "sigma": self.sigma,
                "sigma_schedule": self.schedule, "sigma_delta": self.delta, "loss_map": self.loss_map,
                "loss_map_weight": self.map_weight if self.loss_map else None, "boundary": self.boundary,
                "residual": self.residual_loss.params() if self.residual_loss is not None else None,
                "supervision": "every stack"}
