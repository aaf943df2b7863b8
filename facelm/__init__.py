"""facelm: facial landmark localisation (Wing loss, CNN-6/7, pose-based data balancing, two-stage ONNX predictor).

The front door (docs/python.md)::

    import facelm
    lm = facelm.Landmarker()                    # shipped models, default detector, device auto
    faces = lm("photo.jpg")                     # [Face(box, score, angle, landmarks (L, 2), scheme, ...)]
    for result in lm.batch(["photos/"]):       # streams ImageFaces, one per image
        ...

``Landmarker``, ``Face`` and ``ImageFaces`` are imported on first use, so ``import facelm`` (and ``facelm --help``)
loads neither torch nor onnxruntime.
"""

__version__ = "0.1.0"

from facelm.errors import DataError as DataError, FacelmError as FacelmError, ImageError as ImageError
from facelm.errors import ModelError as ModelError, UsageError as UsageError
from facelm.schemes import LandmarkScheme as LandmarkScheme, get_scheme as get_scheme, list_schemes as list_schemes

__all__ = ["__version__", "Landmarker", "Face", "ImageFaces", "ImageError", "FacelmError", "UsageError",
           "DataError", "ModelError", "LandmarkScheme", "get_scheme", "list_schemes"]

_API = ("Landmarker", "Face", "ImageFaces")


def __getattr__(name: str):
    if name in _API:
        from facelm import api

        return getattr(api, name)
    raise AttributeError(f"module 'facelm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
