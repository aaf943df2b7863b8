"""The CNN-6/7 family of Feng et al. (CVPR 2018): one plain conv/pool/FC landmark regressor, ``ConvRegressor``,
registered in three variants.

* ``cnn6`` (stage 1): 64x64x3 input; five blocks of 3x3 conv (stride 1, pad 1) + ReLU + 2x2 max pool (stride 2)
  with 32-64-128-256-512 channels (-> 2x2x512); FC 1024 + ReLU; FC 2L. 3,806,152 parameters for L = 68 (the
  paper's "3.8 M").
* ``cnn7`` (stage 2): 128x128x3 input; six such blocks with 64-128-256-512-512-512 channels; FC 1024 + ReLU;
  FC 2L. 8,508,168 parameters for L = 68; CNN-6 + CNN-7 = 12,314,320 (the paper's "12.3 M").
* ``cnn6r`` (stage 2, not in the paper): the CNN-6 network on the stage-2 crop (the levelled square of the stage-1
  shape) at 64x64: a refiner that costs what stage 1 costs (CNN-7 is 14x the compute) and can be warm-started from
  a trained CNN-6 (``facelm.checkpoint.load_init_weights``), for machines where CNN-7 cannot be trained to the
  paper's budget. ``input_size=128`` reads a 128x128 crop instead: its first conv is 6x6 with stride 2 (the rest
  as at 64 px, +2.6 k parameters), and it warm-starts from a 64-px network as exactly that network on the crop's
  2x2 means (``ConvRegressor.adapted_state``); training then uses the extra detail.

No batch-norm and, by default, no dropout (paper §7.1, docs/training.md); ``facelm train --dropout P`` adds dropout
on the FC layers' inputs while training (``ConvRegressor.dropout``).

Input/output contract (shared by every facelm regressor, recorded in checkpoints and ONNX metadata):

- input ``(N, 3, S, S)`` float32, **RGB pixel values in [0, 255]**; the model normalises internally with
  ``(x - pixel_mean) / pixel_std`` = ``(x - 127.5) / 128``;
- output ``(N, L, 2)`` landmark (x, y) in **crop pixels**: 0-based, pixel centres at integers, so the crop spans
  -0.5 .. S - 0.5.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facelm.models._registry import register_model

__all__ = ["ConvRegressor", "CNN6", "CNN7", "cnn6", "cnn7", "PIXEL_MEAN", "PIXEL_STD", "HEAD_INIT_STD"]

PIXEL_MEAN = 127.5
PIXEL_STD = 128.0

# Std of the output layer's initial weights. Under Kaiming init the hidden FC's ReLU output has an RMS of
# about 0.35 (flat grey crops) to 2.5 (uniform-noise crops) at width 1 (max-pooling ReLU maps makes it grow layer
# by layer), so each output coordinate starts at mean_shape + N(0, (HEAD_INIT_STD * sqrt(1024) * rms)^2): a
# spread of 0.01-0.08 crop px (measured, CNN-6 and CNN-7), far below one pixel and below Wing's eps (2-3 px), so
# training starts at the mean shape. The weights are not exactly zero so that the body gets a (small) gradient
# from the first step instead of waiting for the head to grow.
HEAD_INIT_STD = 1e-3


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class ConvRegressor(nn.Module):
    """Plain landmark regressor: [3x3 conv + ReLU + 2x2 max-pool] x k, FC + ReLU, FC 2L (the CNN-6/7 family).

    Args:
        arch: architecture name recorded on the model (``"cnn6"``, ``"cnn7"``).
        input_size: side S of the square input crop in pixels; must be divisible by ``2 ** len(channels)``.
        channels: output channels of each conv at ``width = 1``.
        hidden: size of the hidden FC layer at ``width = 1``.
        num_landmarks: L.
        mean_shape: optional ``(L, 2)`` (x, y) in crop pixels; initial value of the output bias. Defaults to the
            crop centre ``(S - 1) / 2`` for every landmark.
        width: multiplier on every conv's channels and on ``hidden`` (rounded, at least 1).
        convs: 3x3 convs per block (1-4).
        stride: 1, or 2 for a first conv of 6x6 with stride 2 (pad 2) that reads an input of twice the side
            (``input_size`` divisible by ``2 * 2 ** len(channels)``); see ``adapted_state``.

    Attributes:
        arch, input_size, num_landmarks, width: as given.
        pixel_mean, pixel_std: the input normalisation ``(x - pixel_mean) / pixel_std`` done inside ``forward``.
        features: the conv/ReLU/pool stack, ``(N, 3, S, S) -> (N, C, S / 2**k, S / 2**k)``.
        fc: hidden FC (followed by ReLU). head: the output FC, ``2L`` outputs.
        dropout: dropout probability on the inputs of ``fc`` and ``head`` in training mode (0 by default, as in the
            paper; ``facelm train --dropout``). Not a weight: an eval-mode network, and so every exported model,
            computes the same function whatever its value.
    """

    def __init__(self, *, arch: str, input_size: int, channels: Sequence[int], hidden: int, num_landmarks: int,
                 mean_shape: np.ndarray | None = None, width: float = 1.0, convs: int = 1, stride: int = 1):
        super().__init__()
        if isinstance(num_landmarks, bool) or not isinstance(num_landmarks, (int, np.integer)) \
                or num_landmarks < 1:
            raise ValueError(f"num_landmarks must be a positive integer, got {num_landmarks!r}")
        width = float(width)
        if not (math.isfinite(width) and width > 0):
            raise ValueError(f"width must be a finite number > 0, got {width!r}")
        if isinstance(convs, bool) or not isinstance(convs, (int, np.integer)) or not 1 <= convs <= 4:
            raise ValueError(f"convs (3x3 convs per block) must be an integer from 1 to 4, got {convs!r}")
        if stride not in (1, 2):
            raise ValueError(f"stride (of the first conv) must be 1 or 2, got {stride!r}")
        n_pool = len(channels)
        if input_size % (stride * 2 ** n_pool) != 0:
            raise ValueError(f"input_size {input_size} is not divisible by {stride * 2 ** n_pool}")
        num_landmarks = int(num_landmarks)

        self.arch = arch
        self.input_size = int(input_size)
        self.num_landmarks = num_landmarks
        self.width = width
        self.convs = int(convs)
        self.stride = int(stride)
        self.pixel_mean = PIXEL_MEAN
        self.pixel_std = PIXEL_STD
        self.dropout = 0.0

        layers: list[nn.Module] = []
        in_c = 3
        for c in channels:
            out_c = _scaled(c, width)
            for _ in range(self.convs):
                s = self.stride if not layers else 1  # the first conv: 3s x 3s, stride s, pad s
                layers += [nn.Conv2d(in_c, out_c, kernel_size=3 * s, stride=s, padding=s), nn.ReLU(inplace=True)]
                in_c = out_c
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        final = input_size // (stride * 2 ** n_pool)
        hidden_c = _scaled(hidden, width)
        self.fc = nn.Linear(in_c * final * final, hidden_c)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(hidden_c, 2 * num_landmarks)
        self.reset_parameters(mean_shape)

    def _check_mean_shape(self, mean_shape: np.ndarray | torch.Tensor | None) -> np.ndarray:
        if mean_shape is None:
            c = (self.input_size - 1) / 2.0
            return np.full((self.num_landmarks, 2), c, dtype=np.float64)
        if isinstance(mean_shape, torch.Tensor):
            mean_shape = mean_shape.detach().cpu().numpy()
        ms = np.asarray(mean_shape, dtype=np.float64)
        if ms.shape != (self.num_landmarks, 2):
            raise ValueError(f"mean_shape must have shape ({self.num_landmarks}, 2) (x, y in crop pixels), "
                             f"got {ms.shape}")
        if not np.all(np.isfinite(ms)):
            raise ValueError("mean_shape contains non-finite values")
        return ms

    @torch.no_grad()
    def reset_parameters(self, mean_shape: np.ndarray | None = None) -> None:
        """(Re)initialise: Kaiming-normal (fan-in, ReLU) weights and zero biases for the conv and hidden FC
        layers; the output layer gets ``N(0, HEAD_INIT_STD^2)`` weights and ``mean_shape`` as its bias.

        Args:
            mean_shape: ``(L, 2)`` (x, y) in crop pixels, or None for the crop centre.
        """
        ms = self._check_mean_shape(mean_shape)
        for m in [*self.features, self.fc]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, mean=0.0, std=HEAD_INIT_STD)
        self.head.bias.copy_(torch.as_tensor(ms.reshape(-1), dtype=self.head.bias.dtype))

    @torch.no_grad()
    def deepened_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """Warm start a deeper network (more ``convs`` per block) from a trained shallower one with the same
        function (Net2DeeperNet, Chen et al. 2016).

        Each block's convs of ``state`` fill the first convs of this network's block; each further conv starts as
        the identity (centre tap 1 on its own channel, zero bias). It follows a ReLU, so its input is >= 0 and
        conv + ReLU passes it through unchanged: the deeper network computes what the shallower one did, then
        training uses the added layers.

        Args:
            state: a state dict of the same family with fewer convs per block (``features.I.weight/bias``,
                ``fc.*``, ``head.*``).

        Returns:
            This network's full state dict, or None when ``state`` is not a shallower network of this family.
        """
        src = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"features\.(\d+)\.weight", k)))
        blocks = sum(isinstance(m, nn.MaxPool2d) for m in self.features)
        if not src or len(src) % blocks or len(src) // blocks >= self.convs:
            return None
        per = len(src) // blocks
        own = [i for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]
        out = {k: v for k, v in state.items() if not k.startswith("features.")}
        for n, i in enumerate(own):
            b, j = divmod(n, self.convs)
            conv = self.features[i]
            if j < per:
                s = src[b * per + j]
                out[f"features.{i}.weight"] = state[f"features.{s}.weight"]
                out[f"features.{i}.bias"] = state[f"features.{s}.bias"]
            else:
                w = torch.zeros_like(conv.weight)
                w[torch.arange(w.shape[0]), torch.arange(w.shape[0]), 1, 1] = 1.0
                out[f"features.{i}.weight"] = w
                out[f"features.{i}.bias"] = torch.zeros_like(conv.bias)
        return out

    @torch.no_grad()
    def sharpened_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """Warm start this network (first conv of stride ``s`` = 2, input ``s`` x the side) from a trained one of
        stride 1 with the same function on the input's ``s x s`` means.

        A 3x3 conv (pad 1) on the ``s x s`` means of the input is the ``3s x 3s`` conv with stride ``s`` (pad
        ``s``) whose taps ``(s i + a, s j + b)`` are ``w[i, j] / s^2``; the rest of the network is unchanged, and
        the output, in crop pixels, is ``s`` x the old one + ``(s - 1) / 2`` (pixel centres at integers in both).

        Args:
            state: a state dict of the same family, first conv 3x3 (stride 1), same convs per block.

        Returns:
            This network's full state dict, or None when ``state`` is not such a network (its first conv is not
            3x3, or this network's stride is 1).
        """
        s = self.stride
        w0 = state.get("features.0.weight")
        if s == 1 or w0 is None or tuple(w0.shape[2:]) != (3, 3):
            return None
        out = dict(state)
        out["features.0.weight"] = w0.repeat_interleave(s, 2).repeat_interleave(s, 3) / (s * s)
        out["head.weight"] = state["head.weight"] * s
        out["head.bias"] = state["head.bias"] * s + (s - 1) / 2
        return out

    def adapted_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """``state`` of a shallower and/or stride-1 network of this family made this network's, with the same
        function (``deepened_state``, then ``sharpened_state``); None when neither applies."""
        deeper = self.deepened_state(state) if any(k not in state for k in self.state_dict()) else None
        sharper = self.sharpened_state(deeper or state)
        return sharper or deeper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Regress landmarks.

        Args:
            x: ``(N, 3, S, S)`` float RGB pixel values in [0, 255] (not normalised); any memory format.

        Returns:
            ``(N, L, 2)`` landmark (x, y) in crop pixels (0-based, pixel centres at integers); float32 under
            autocast (the output layer always runs in float32 there).
        """
        s = self.input_size
        # Shape-only check (static under torch.export); skipped by the TorchScript tracer, which would warn.
        if not torch.jit.is_tracing() and (x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s)):
            raise ValueError(f"{self.arch} expects input of shape (N, 3, {s}, {s}), got {tuple(x.shape)}")
        x = (x - self.pixel_mean) / self.pixel_std
        x = self.features(x)
        x = torch.flatten(x, 1)  # logical NCHW order, so weights do not depend on the memory format
        p = self.dropout if self.training else 0.0
        if p:
            x = F.dropout(x, p)
        x = self.relu(self.fc(x))
        if p:
            x = F.dropout(x, p)
        if torch.is_autocast_enabled(x.device.type):
            # bf16 has 8 significant bits: coordinates of 64-128 px would come out on a 0.5 px grid, too coarse
            # for landmarks. The output layer is tiny, so run it in float32 (output dtype float32 too).
            with torch.autocast(x.device.type, enabled=False):
                x = self.head(x.float())
        else:
            x = self.head(x)
        return x.unflatten(1, (self.num_landmarks, 2))

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, input_size={self.input_size}, num_landmarks={self.num_landmarks}, " \
               f"width={self.width}" + (f", convs={self.convs}" if self.convs != 1 else "") \
            + (f", stride={self.stride}" if self.stride != 1 else "")


class CNN6(ConvRegressor):
    """CNN-6 (stage 1): 64x64 input, convs 32-64-128-256-512, FC 1024, FC 2L.

    Args:
        num_landmarks: L.
        mean_shape: optional ``(L, 2)`` initial output (x, y) in crop pixels of the 64x64 crop.
        width: channel/hidden multiplier (1.0 = the paper's network).
    """

    INPUT_SIZE = 64
    CHANNELS = (32, 64, 128, 256, 512)
    HIDDEN = 1024

    def __init__(self, num_landmarks: int, *, mean_shape: np.ndarray | None = None, width: float = 1.0,
                 arch: str = "cnn6", convs: int = 1, input_size: int = INPUT_SIZE):
        if input_size not in (self.INPUT_SIZE, 2 * self.INPUT_SIZE):
            raise ValueError(f"input_size must be {self.INPUT_SIZE} or {2 * self.INPUT_SIZE}, got {input_size!r}")
        super().__init__(arch=arch, input_size=input_size, channels=self.CHANNELS, hidden=self.HIDDEN,
                         num_landmarks=num_landmarks, mean_shape=mean_shape, width=width, convs=convs,
                         stride=input_size // self.INPUT_SIZE)


@register_model(input_size=CNN6.INPUT_SIZE, stage=1)
def cnn6(num_landmarks: int, *, mean_shape: np.ndarray | None = None, width: float = 1.0, convs: int = 1) -> CNN6:
    """CNN-6 of Feng et al. 2018: 64x64 RGB [0, 255] -> ``(N, L, 2)`` crop pixels; 3.8 M parameters at L = 68.
    ``convs``: 3x3 convs per block (1 = the paper's network)."""
    return CNN6(num_landmarks, mean_shape=mean_shape, width=width, convs=convs)


@register_model(input_size=CNN6.INPUT_SIZE, stage=2, network="cnn6")
def cnn6r(num_landmarks: int, *, mean_shape: np.ndarray | None = None, width: float = 1.0, convs: int = 1,
          input_size: int = CNN6.INPUT_SIZE) -> CNN6:
    """The CNN-6 network as stage 2 ("refiner"): 64x64 crops of the levelled square of the stage-1 shape, or
    128x128 ones (``input_size=128``: a 6x6 stride-2 first conv; warm-starts from a 64-px network)."""
    return CNN6(num_landmarks, mean_shape=mean_shape, width=width, arch="cnn6r", convs=convs,
                input_size=input_size)


class CNN7(ConvRegressor):
    """CNN-7 (stage 2): 128x128 input, convs 64-128-256-512-512-512, FC 1024, FC 2L.

    Args:
        num_landmarks: L.
        mean_shape: optional ``(L, 2)`` initial output (x, y) in crop pixels of the 128x128 crop.
        width: channel/hidden multiplier (1.0 = the paper's network).
    """

    INPUT_SIZE = 128
    CHANNELS = (64, 128, 256, 512, 512, 512)
    HIDDEN = 1024

    def __init__(self, num_landmarks: int, *, mean_shape: np.ndarray | None = None, width: float = 1.0,
                 convs: int = 1):
        super().__init__(arch="cnn7", input_size=self.INPUT_SIZE, channels=self.CHANNELS, hidden=self.HIDDEN,
                         num_landmarks=num_landmarks, mean_shape=mean_shape, width=width, convs=convs)


@register_model(input_size=CNN7.INPUT_SIZE, stage=2)
def cnn7(num_landmarks: int, *, mean_shape: np.ndarray | None = None, width: float = 1.0, convs: int = 1) -> CNN7:
    """CNN-7 of Feng et al. 2018: 128x128 RGB [0, 255] -> ``(N, L, 2)`` crop pixels; 8.5 M parameters at L = 68."""
    return CNN7(num_landmarks, mean_shape=mean_shape, width=width, convs=convs)
