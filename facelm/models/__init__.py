"""Landmark regression networks and their registry.

Every model maps ``(N, 3, S, S)`` float32 RGB pixel values in [0, 255] to ``(N, L, 2)`` landmark (x, y) in crop
pixels (0-based, pixel centres at integers). Build one by name with ``create_model``.
"""

from facelm.models._registry import (
    create_model as create_model,
    is_model as is_model,
    list_models as list_models,
    model_input_size as model_input_size,
    register_model as register_model,
)
from facelm.models.cnn6 import CNN6 as CNN6, ConvRegressor as ConvRegressor
from facelm.models.cnn7 import CNN7 as CNN7

__all__ = ["create_model", "list_models", "model_input_size", "register_model", "is_model",
           "ConvRegressor", "CNN6", "CNN7"]
