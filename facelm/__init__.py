"""facelm: facial landmark localisation (Wing loss, CNN-6/7, pose-based data balancing, two-stage ONNX predictor)."""

__version__ = "0.1.0"

from facelm.schemes import LandmarkScheme as LandmarkScheme, get_scheme as get_scheme, list_schemes as list_schemes

__all__ = ["__version__", "LandmarkScheme", "get_scheme", "list_schemes"]
