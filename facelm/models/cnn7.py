"""CNN-7, the stage-2 network of Feng et al. (CVPR 2018).

Layers (paper §7.1, docs/training.md): 128x128x3 input; six blocks of 3x3 conv (stride 1, pad 1) + ReLU + 2x2 max
pool (stride 2) with 64-128-256-512-512-512 channels (-> 2x2x512); FC 1024 + ReLU; FC 2L. No batch-norm, no
dropout. 8,508,168 parameters for L = 68; CNN-6 + CNN-7 = 12,314,320 (the paper's "12.3 M").

Same input/output contract as CNN-6 (see ``facelm.models.cnn6``): RGB [0, 255] in, crop pixels out.
"""

from __future__ import annotations

import numpy as np

from facelm.models._registry import register_model
from facelm.models.cnn6 import ConvRegressor

__all__ = ["CNN7", "cnn7"]


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

    def __init__(self, num_landmarks: int, *, mean_shape: np.ndarray | None = None, width: float = 1.0):
        super().__init__(arch="cnn7", input_size=self.INPUT_SIZE, channels=self.CHANNELS, hidden=self.HIDDEN,
                         num_landmarks=num_landmarks, mean_shape=mean_shape, width=width)


@register_model(input_size=CNN7.INPUT_SIZE)
def cnn7(num_landmarks: int, *, mean_shape: np.ndarray | None = None, width: float = 1.0) -> CNN7:
    """CNN-7 of Feng et al. 2018: 128x128 RGB [0, 255] -> ``(N, L, 2)`` crop pixels; 8.5 M parameters at L = 68."""
    return CNN7(num_landmarks, mean_shape=mean_shape, width=width)
