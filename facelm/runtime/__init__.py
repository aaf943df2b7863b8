"""Inference runtime: onnxruntime sessions for the landmark models and the two-stage pipeline.

Example:
    >>> from facelm.runtime import Landmarker, load_models, resolve_providers   # doctest: +SKIP
    >>> from facelm.detectors import create_detector
    >>> from facelm.sources import iter_sources
    >>> lm = Landmarker(load_models("models", providers=resolve_providers("auto")), create_detector())
    >>> for r in lm.run(iter_sources(["photos/"])):
    ...     print(r.record(lm.scheme.name))
"""

from facelm.runtime.pipeline import FaceResult, ImageResult, Landmarker, annotate
from facelm.runtime.session import (
                                    ModelPair,
                                    ModelSession,
                                    cuda_usable,
                                    default_models_dir,
                                    load_models,
                                    resolve_providers,
)

__all__ = [
                                    "FaceResult",
                                    "ImageResult",
                                    "Landmarker",
                                    "ModelPair",
                                    "ModelSession",
                                    "annotate",
                                    "cuda_usable",
                                    "default_models_dir",
                                    "load_models",
                                    "resolve_providers",
]
