"""Stacked hourglass heatmap networks: the Adaptive Wing (AWing) and SMT-Net families (docs/heatmap.md).

Architecture (Newell et al., ECCV 2016, with the options of Wang et al., ICCV 2019 and Yang et al., CVPRW 2019):

- **stem**: 7x7 conv stride 2 (3 -> C/4) + BN + ReLU, block(C/4 -> C/2), 2x2 max-pool, block(C/2 -> C/2),
  block(C/2 -> C): ``S x S`` input -> ``S/4 x S/4`` features with C channels (``256 -> 64`` in the papers);
- **stacks** x [hourglass of recursion ``depth`` (skip branch + max-pool / block / inner hourglass / block /
  nearest x2 upsample at each level; the innermost level is the *centre*, ``S / 4 / 2**depth`` px), block,
  1x1 conv + BN + ReLU, 1x1 conv -> L heatmaps (+ 1 boundary heatmap)]; between stacks the standard remap
  ``x_next = x + conv1x1(features) + conv1x1(heatmaps)`` (intermediate supervision: every stack is supervised).
- **block**: ``"bottleneck"`` (default) is Newell's pre-activation residual bottleneck
  BN-ReLU-1x1(C/2)-BN-ReLU-3x3(C/2)-BN-ReLU-1x1(C) + skip (1x1 conv when the width changes); ``"hpm"`` is the
  hierarchical, parallel and multi-scale block of Bulat & Tzimiropoulos (ICCV 2017) that both heatmap papers use:
  three chained pre-activation 3x3 convs with C/2, C/4, C/4 outputs, concatenated, + skip.
- ``boundary=True`` (AWing §5): every stack predicts one extra channel, the face-boundary heatmap.
- ``coordconv=True`` (AWing §6): x, y and radius channels are concatenated to the normalised image before the
  stem conv and to the features before each hourglass (then a 1x1 conv back to C channels); with ``boundary``
  too, from the second stack on two more channels: x and y where the previous stack's boundary prediction is
  >= 0.05, 0 elsewhere. Coordinates are ``2 * j / (n - 1) - 1`` in [-1, 1], radius ``sqrt(x^2 + y^2) / sqrt(2)``
  in [0, 1] (the AWing reference code's encoding).
- ``residual=True`` (SMT-Net §3.3): from each hourglass's centre features, FC(hidden) + ReLU + FC(2L) regresses
  the sub-pixel residual (in heatmap pixels) to add to the integer argmax of that stack's heatmaps.

Input/output contract (shared by every facelm model): input ``(N, 3, S, S)`` float32 RGB in [0, 255], normalised
inside with ``(x - 127.5) / 128`` (same as CNN-6/7); ``forward`` returns ``(N, L, 2)`` landmark (x, y) in crop
pixels (0-based, pixel centres at integers) decoded from the **last** stack. ``forward_train`` returns the raw
per-stack outputs for the losses. Heatmap pixel ``p`` maps to crop pixel ``(p + 0.5) * S / H - 0.5``.

Sizes at L = 68 (exact counts pinned in ``tests/test_hourglass.py``): the small CPU default (S = 128, 2 stacks,
C = 64, depth 3, bottleneck) has 350,040 parameters (944,744 with the SMT residual branch); the AWing paper network
(S = 256, 4 stacks, C = 256, depth 4, boundary, CoordConv) has 24,098,068 with HPM blocks (the "~24 M" of the
reference code) and 13,214,740 with bottleneck blocks; SMT-Net (2 stacks, HPM, residual) has 14,273,496.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facelm.models._registry import register_model

__all__ = ["BLOCKS", "BOUNDARY_THRESHOLD", "HourglassNet", "coord_channels", "hourglass", "smt"]

PIXEL_MEAN = 127.5
PIXEL_STD = 128.0
BOUNDARY_THRESHOLD = 0.05  # AWing: boundary-masked coordinates where the previous stack's boundary >= 0.05
BLOCKS = ("bottleneck", "hpm")
RESIDUAL_INIT_STD = 1e-3  # last FC of the SMT residual branch: the residual starts at ~0 heatmap px


def coord_channels(size: int) -> torch.Tensor:
    """CoordConv channels for a ``size x size`` map: ``(1, 3, size, size)`` = x, y in [-1, 1], radius in [0, 1].

    ``x[..., i, j] = 2 j / (size - 1) - 1``, ``y[..., i, j] = 2 i / (size - 1) - 1``,
    ``r = sqrt(x^2 + y^2) / sqrt(2)`` (1 at the corners).
    """
    t = torch.linspace(-1.0, 1.0, size) if size > 1 else torch.zeros(1)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    rr = torch.sqrt(xx.square() + yy.square()) / math.sqrt(2.0)
    return torch.stack([xx, yy, rr]).unsqueeze(0)


def _bn_relu(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class _Bottleneck(nn.Module):
    """Newell's pre-activation bottleneck: BN-ReLU-1x1(out/2)-BN-ReLU-3x3(out/2)-BN-ReLU-1x1(out) + skip."""

    def __init__(self, in_c: int, out_c: int):
        super().__init__()
        mid = max(1, out_c // 2)
        self.body = nn.Sequential(
            _bn_relu(in_c), nn.Conv2d(in_c, mid, 1, bias=False),
            _bn_relu(mid), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            _bn_relu(mid), nn.Conv2d(mid, out_c, 1))
        self.skip = nn.Identity() if in_c == out_c else nn.Conv2d(in_c, out_c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class _HPM(nn.Module):
    """Bulat & Tzimiropoulos' hierarchical, parallel, multi-scale block (the FAN/AWing ``ConvBlock``)."""

    def __init__(self, in_c: int, out_c: int):
        super().__init__()
        c1 = max(1, out_c // 2)
        c2 = max(1, out_c // 4)
        c3 = max(1, out_c - c1 - c2)
        self.branch1 = nn.Sequential(_bn_relu(in_c), nn.Conv2d(in_c, c1, 3, padding=1, bias=False))
        self.branch2 = nn.Sequential(_bn_relu(c1), nn.Conv2d(c1, c2, 3, padding=1, bias=False))
        self.branch3 = nn.Sequential(_bn_relu(c2), nn.Conv2d(c2, c3, 3, padding=1, bias=False))
        self.skip = nn.Identity() if in_c == c1 + c2 + c3 else \
            nn.Sequential(_bn_relu(in_c), nn.Conv2d(in_c, c1 + c2 + c3, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = self.branch1(x)
        o2 = self.branch2(o1)
        o3 = self.branch3(o2)
        return torch.cat([o1, o2, o3], dim=1) + self.skip(x)


_BLOCK_TYPES: dict[str, type[nn.Module]] = {"bottleneck": _Bottleneck, "hpm": _HPM}


class _Hourglass(nn.Module):
    """One hourglass of recursion ``depth``; ``forward`` returns (output, centre features)."""

    def __init__(self, depth: int, c: int, block: type[nn.Module]):
        super().__init__()
        self.up1 = block(c, c)
        self.low1 = block(c, c)
        self.low2: nn.Module = _Hourglass(depth - 1, c, block) if depth > 1 else block(c, c)
        self.low3 = block(c, c)
        self.inner = depth > 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        up1 = self.up1(x)
        low = self.low1(F.max_pool2d(x, 2, 2))
        if self.inner:
            low, centre = self.low2(low)
        else:
            low = centre = self.low2(low)
        low = self.low3(low)
        return up1 + F.interpolate(low, scale_factor=2.0, mode="nearest"), centre


def _positive_int(name: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


class HourglassNet(nn.Module):
    """Stacked hourglass landmark network (heatmap family): AWing (boundary, CoordConv) and SMT-Net (residual).

    Args:
        num_landmarks: L, the number of landmark heatmaps.
        stacks: number of hourglasses (2 for SMT-Net, 4 for AWing).
        channels: feature width C at ``width = 1`` (256 in the papers).
        depth: hourglass recursion depth (4 in the papers: 64 -> 4 px at the centre).
        input_size: side S of the square input crop; heatmaps are ``S/4 x S/4``. ``S / 4`` must be divisible by
            ``2 ** depth``.
        boundary: predict one extra boundary heatmap per stack (AWing).
        coordconv: CoordConv before the stem conv and before every hourglass; boundary-masked x/y channels from
            the second stack on when ``boundary`` is also set (AWing).
        residual: SMT-Net's coordinate-residual branch from every hourglass centre.
        block: ``"bottleneck"`` (Newell) or ``"hpm"`` (Bulat, used by both heatmap papers).
        residual_hidden: width of the residual branch's hidden FC (not given by SMT-Net; 256).
        width: multiplier on ``channels`` (rounded, at least 4).
        mean_shape: accepted for the registry contract and validated (``(L, 2)``, finite), but unused: heatmap
            models have no coordinate head to initialise.
        arch: architecture name recorded on the model (``"hourglass"``, ``"smt"``).

    Attributes:
        arch, num_landmarks, stacks, depth, input_size, boundary, coordconv, residual, block, width: as given.
        channels: the constructor's (unscaled) ``channels``; ``features``: the actual width ``C``.
        heatmap_size: H = S / 4. family: ``"heatmap"``. pixel_mean, pixel_std: the input normalisation.

    Under autocast the heatmap heads and the residual branch run in float32 (outputs float32).

    Raises:
        ValueError: invalid sizes (``input_size`` not divisible by ``4 * 2**depth``, non-positive counts),
            ``width``, ``block`` or ``mean_shape``.
        TypeError: a non-bool ``boundary``/``coordconv``/``residual``.
    """

    family = "heatmap"

    def __init__(self, num_landmarks: int, *, stacks: int = 2, channels: int = 64, depth: int = 3,
                 input_size: int = 128, boundary: bool = False, coordconv: bool = False, residual: bool = False,
                 block: str = "bottleneck", residual_hidden: int = 256, width: float = 1.0,
                 mean_shape: np.ndarray | torch.Tensor | None = None, arch: str = "hourglass"):
        super().__init__()
        num_landmarks = _positive_int("num_landmarks", num_landmarks)
        stacks = _positive_int("stacks", stacks)
        channels = _positive_int("channels", channels)
        depth = _positive_int("depth", depth)
        input_size = _positive_int("input_size", input_size)
        residual_hidden = _positive_int("residual_hidden", residual_hidden)
        width = float(width)
        if not (math.isfinite(width) and width > 0):
            raise ValueError(f"width must be a finite number > 0, got {width!r}")
        if block not in _BLOCK_TYPES:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        for name, flag in (("boundary", boundary), ("coordconv", coordconv), ("residual", residual)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        if input_size % (4 * 2 ** depth) != 0:
            raise ValueError(f"input_size {input_size} must be divisible by 4 * 2**depth = {4 * 2 ** depth} "
                             f"(stem /4, then {depth} hourglass poolings)")
        if mean_shape is not None:
            if isinstance(mean_shape, torch.Tensor):
                mean_shape = mean_shape.detach().cpu().numpy()
            ms = np.asarray(mean_shape, dtype=np.float64)
            if ms.shape != (num_landmarks, 2):
                raise ValueError(f"mean_shape must have shape ({num_landmarks}, 2) (x, y in crop pixels), "
                                 f"got {ms.shape}")
            if not np.all(np.isfinite(ms)):
                raise ValueError("mean_shape contains non-finite values")

        self.arch = arch
        self.num_landmarks = num_landmarks
        self.stacks = stacks
        self.channels = channels
        self.depth = depth
        self.input_size = input_size
        self.heatmap_size = input_size // 4
        self.boundary = bool(boundary)
        self.coordconv = bool(coordconv)
        self.residual = bool(residual)
        self.block = block
        self.residual_hidden = residual_hidden
        self.width = width
        self.pixel_mean = PIXEL_MEAN
        self.pixel_std = PIXEL_STD
        c = self.features = max(4, round(channels * width))
        blk = _BLOCK_TYPES[block]
        n_out = num_landmarks + int(self.boundary)
        h = self.heatmap_size
        centre = h // 2 ** depth

        if self.coordconv:
            self.register_buffer("coords_input", coord_channels(input_size), persistent=False)
            self.register_buffer("coords_heatmap", coord_channels(h), persistent=False)
        c4, c2 = max(1, c // 4), max(1, c // 2)
        self.stem = nn.Sequential(
            nn.Conv2d(3 + 3 * int(self.coordconv), c4, 7, stride=2, padding=3, bias=False), _bn_relu(c4),
            blk(c4, c2), nn.MaxPool2d(2, 2), blk(c2, c2), blk(c2, c))
        # CoordConv before each hourglass: 3 coordinate channels (+2 boundary-masked from the second stack on)
        self.coord_convs = nn.ModuleList(
            [nn.Conv2d(c + 3 + 2 * int(self.boundary and i > 0), c, 1) for i in range(stacks)]
            if self.coordconv else [])
        self.hourglasses = nn.ModuleList([_Hourglass(depth, c, blk) for _ in range(stacks)])
        self.post = nn.ModuleList([nn.Sequential(blk(c, c), nn.Conv2d(c, c, 1, bias=False), _bn_relu(c))
                                   for _ in range(stacks)])
        self.heads = nn.ModuleList([nn.Conv2d(c, n_out, 1) for _ in range(stacks)])
        # remap into the feature stream between stacks (none after the last: every parameter is used)
        self.remap_features = nn.ModuleList([nn.Conv2d(c, c, 1) for _ in range(stacks - 1)])
        self.remap_heatmaps = nn.ModuleList([nn.Conv2d(n_out, c, 1) for _ in range(stacks - 1)])
        self.residual_heads = nn.ModuleList(
            [nn.Sequential(nn.Flatten(1), nn.Linear(c * centre * centre, residual_hidden), nn.ReLU(inplace=True),
                           nn.Linear(residual_hidden, 2 * num_landmarks)) for _ in range(stacks)]
            if self.residual else [])
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-out, ReLU) convs, BN weight 1 / bias 0, zero conv/FC biases; the last FC of each
        residual branch gets ``N(0, 1e-3^2)`` weights so the predicted residual starts at ~0 heatmap px."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for head in self.heads:  # heatmap heads: small outputs at init (targets are ~0 almost everywhere)
            nn.init.normal_(head.weight, std=1e-3)
        for rh in self.residual_heads:
            nn.init.normal_(rh[-1].weight, std=RESIDUAL_INIT_STD)

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-able): ``HourglassNet(**model.config())`` rebuilds the network, and
        ``create_model(cfg["arch"], cfg["num_landmarks"], width=cfg["width"], **rest)`` with the remaining keys
        does too."""
        return {"arch": self.arch, "num_landmarks": self.num_landmarks, "stacks": self.stacks,
                "channels": self.channels, "depth": self.depth, "input_size": self.input_size,
                "boundary": self.boundary, "coordconv": self.coordconv, "residual": self.residual,
                "block": self.block, "residual_hidden": self.residual_hidden, "width": self.width}

    def _check_input(self, x: torch.Tensor) -> None:
        s = self.input_size
        if not torch.jit.is_tracing() and (x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s)):
            raise ValueError(f"{self.arch} expects input of shape (N, 3, {s}, {s}), got {tuple(x.shape)}")

    def _coords(self, buf: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return buf.to(like.dtype).expand(like.shape[0], -1, -1, -1)

    def _run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per stack: the raw head outputs ``(N, L [+1], H, H)`` and the residuals ``(N, L, 2)`` (if any)."""
        self._check_input(x)
        x = (x - self.pixel_mean) / self.pixel_std
        if self.coordconv:
            x = torch.cat([x, self._coords(self.coords_input, x)], dim=1)
        x = self.stem(x)
        outs: list[torch.Tensor] = []
        residuals: list[torch.Tensor] = []
        for i in range(self.stacks):
            y = x
            if self.coordconv:
                extra = [self._coords(self.coords_heatmap, y)]
                if self.boundary and i > 0:
                    b = outs[-1][:, self.num_landmarks:]  # previous stack's boundary prediction, (N, 1, H, H)
                    mask = (b >= BOUNDARY_THRESHOLD).to(y.dtype)
                    extra.append(extra[0][:, :2] * mask)
                y = self.coord_convs[i](torch.cat([y, *extra], dim=1))
            y, centre = self.hourglasses[i](y)
            y = self.post[i](y)
            out = self._head(i, y)
            outs.append(out)
            if self.residual:
                residuals.append(self._residual(i, centre))
            if i < self.stacks - 1:
                x = x + self.remap_features[i](y) + self.remap_heatmaps[i](out)
        return outs, residuals

    def _head(self, i: int, y: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(y.device.type):  # bf16 heatmaps would blur the argmax/quarter-shift decoding
            with torch.autocast(y.device.type, enabled=False):
                return self.heads[i](y.float())
        return self.heads[i](y)

    def _residual(self, i: int, centre: torch.Tensor) -> torch.Tensor:
        head = self.residual_heads[i]
        if torch.is_autocast_enabled(centre.device.type):  # sub-pixel values: keep the branch in float32
            with torch.autocast(centre.device.type, enabled=False):
                r = head(centre.float())
        else:
            r = head(centre)
        return r.unflatten(1, (self.num_landmarks, 2))

    def forward_train(self, x: torch.Tensor) -> dict[str, Any]:
        """Raw per-stack outputs for the losses (intermediate supervision).

        Args:
            x: ``(N, 3, S, S)`` float RGB pixel values in [0, 255].

        Returns:
            dict with ``"heatmaps"``: list (one per stack) of ``(N, L, H, H)`` raw outputs (no sigmoid: the loss
            decides, e.g. BICE takes logits); ``"boundary"``: list of ``(N, 1, H, H)`` raw boundary outputs, or
            None without ``boundary``; ``"residual"``: list of ``(N, L, 2)`` sub-pixel residuals in heatmap px
            (to add to the integer argmax of the same stack's heatmaps), or None without ``residual``.
        """
        outs, residuals = self._run(x)
        L = self.num_landmarks
        return {"heatmaps": [o[:, :L] for o in outs],
                "boundary": [o[:, L:] for o in outs] if self.boundary else None,
                "residual": residuals if self.residual else None}

    def decode(self, heatmaps: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """Landmarks in crop pixels from one stack's heatmaps ``(N, L, H, H)``: argmax + quarter-pixel shift
        toward the higher neighbour, or, with ``residual`` ``(N, L, 2)``, integer argmax + residual (SMT-Net)."""
        from facelm.heatmap import decode_heatmaps, heatmap_argmax, heatmap_to_crop

        heatmaps = heatmaps.float()
        if residual is None:
            p = decode_heatmaps(heatmaps)
        else:
            p = heatmap_argmax(heatmaps).to(residual.dtype) + residual
        return heatmap_to_crop(p, self.input_size, self.heatmap_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Landmarks from the last stack.

        Args:
            x: ``(N, 3, S, S)`` float RGB pixel values in [0, 255] (not normalised); any memory format.

        Returns:
            ``(N, L, 2)`` float32 landmark (x, y) in crop pixels (0-based, pixel centres at integers).
        """
        outs, residuals = self._run(x)
        return self.decode(outs[-1][:, :self.num_landmarks], residuals[-1].float() if self.residual else None)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())


def _build(arch: str, num_landmarks: int, mean_shape: np.ndarray | None, width: float, **options: Any
           ) -> HourglassNet:
    return HourglassNet(num_landmarks, mean_shape=mean_shape, width=width, arch=arch, **options)


@register_model(input_size=128)
def hourglass(num_landmarks: int, *, mean_shape: np.ndarray | None = None, width: float = 1.0, stacks: int = 2,
              channels: int = 64, depth: int = 3, input_size: int = 128, boundary: bool = False,
              coordconv: bool = False, residual: bool = False, block: str = "bottleneck",
              residual_hidden: int = 256) -> HourglassNet:
    """Stacked hourglass (AWing family): small CPU default 128 px -> 32 px heatmaps, 2 stacks, 64 channels,
    depth 3. AWing's paper network: ``stacks=4, channels=256, depth=4, input_size=256, boundary=True,
    coordconv=True, block="hpm"``."""
    return _build("hourglass", num_landmarks, mean_shape, width, stacks=stacks, channels=channels, depth=depth,
                  input_size=input_size, boundary=boundary, coordconv=coordconv, residual=residual, block=block,
                  residual_hidden=residual_hidden)


@register_model(input_size=128)
def smt(num_landmarks: int, *, mean_shape: np.ndarray | None = None, width: float = 1.0, stacks: int = 2,
        channels: int = 64, depth: int = 3, input_size: int = 128, boundary: bool = False, coordconv: bool = False,
        residual: bool = True, block: str = "bottleneck", residual_hidden: int = 256) -> HourglassNet:
    """SMT-Net: 2 stacked hourglasses with a coordinate-residual branch (2 FCs) from each hourglass centre; same
    small CPU default as ``hourglass``. The paper's network: ``channels=256, depth=4, input_size=256,
    block="hpm"``."""
    return _build("smt", num_landmarks, mean_shape, width, stacks=stacks, channels=channels, depth=depth,
                  input_size=input_size, boundary=boundary, coordconv=coordconv, residual=residual, block=block,
                  residual_hidden=residual_hidden)
