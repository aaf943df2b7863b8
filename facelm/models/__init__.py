"""Landmark regression networks and their registry.

Every model maps ``(N, 3, S, S)`` float32 RGB pixel values in [0, 255] to ``(N, L, 2)`` landmark (x, y) in crop
pixels (0-based, pixel centres at integers). Build one by name with ``create_model``. CNN-6/7 (and ``cnn6r``, CNN-6 as stage 2) regress coordinates;
``HourglassNet`` (``"hourglass"``, ``"smt"``) is the heatmap family (``family == "heatmap"``), trained through
``forward_train``.
"""

from facelm.models._registry import (
    create_model as create_model,
    is_model as is_model,
    list_models as list_models,
    model_input_size as model_input_size,
    model_network as model_network,
    model_options as model_options,
    model_stage as model_stage,
    register_model as register_model,
)
from facelm.models.conv_regressor import CNN6 as CNN6, CNN7 as CNN7, ConvRegressor as ConvRegressor
from facelm.models.hourglass import HourglassNet as HourglassNet

__all__ = ["create_model", "list_models", "model_input_size", "model_network", "model_options", "model_stage",
           "register_model", "is_model",
           "ConvRegressor", "CNN6", "CNN7", "HourglassNet"]
