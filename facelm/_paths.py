"""Where the files that ship with facelm live, for a source checkout and an installed wheel alike.

Kept free of heavy imports (no onnxruntime, OpenCV or torch) so that the command line can name these paths in its
``--help`` without loading a runtime.

* :func:`default_models_dir`: the landmark models (``cnn6.onnx``, ``cnn6r.onnx``) and their model card; the
  repository's ``models/`` in a checkout, the package data ``facelm/_models`` in a wheel (``setup.py`` maps one to
  the other).
* :func:`bundled_detector_dir`: its ``detectors/`` sub-folder, which holds the bundled face detector
  (``yunet_s_dynamic.onnx``, Apache-2.0, with its ``LICENSE`` and ``NOTICE``).
* :func:`cache_dir`: the user cache for detector files fetched by name (``facelm.detectors.yunet``).
* :func:`detector_model_help`, :func:`default_detector_note`: the ``--detector-model`` help and the file a run
  would use here.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BUNDLED_DETECTOR", "DETECTOR_ENV", "bundled_detector_dir", "cache_dir", "default_models_dir",
           "detector_model_help"]

BUNDLED_DETECTOR = "yunet_s_dynamic.onnx"  # the face detector file shipped with facelm
DETECTOR_ENV = "FACELM_DETECTOR_MODEL"  # the environment form of --detector-model


def default_models_dir() -> Path:
    """Where ``predict`` looks for its stage models (``cnn6.onnx``/``cnn6r.onnx``) by default.

    A source checkout uses the repository's ``models/`` folder (next to ``pyproject.toml``); an installed package
    uses its ``facelm/_models`` package data. ``$FACELM_MODELS`` overrides both (handled by the CLI option).
    """
    import facelm

    pkg = Path(facelm.__file__).resolve().parent
    repo = pkg.parent
    if (repo / "pyproject.toml").is_file() and (repo / "models").is_dir():
        return repo / "models"
    if (pkg / "_models").is_dir():
        return pkg / "_models"
    return repo / "models" if (repo / "pyproject.toml").is_file() else pkg / "_models"


def bundled_detector_dir() -> Path:
    """The folder of the face detector shipped with facelm: ``models/detectors`` (checkout) or
    ``facelm/_models/detectors`` (wheel). Not moved by ``--models`` / ``$FACELM_MODELS``: those name landmark models."""
    return default_models_dir() / "detectors"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/facelm`` (default ``~/.cache/facelm``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facelm"


def default_detector_note() -> str:
    """Which detector file a run started now would use without ``--detector-model`` (for ``--help``).

    Cheap (no hashing, no runtime import); the checksum is verified when a run loads the file.
    """
    env = os.environ.get(DETECTOR_ENV)
    bundled = bundled_detector_dir() / BUNDLED_DETECTOR
    if env:
        return f"${DETECTOR_ENV} = {env}"
    if bundled.is_file():
        return f"the bundled {bundled} (Apache-2.0, libfacedetection.train; works offline)"
    return f"{cache_dir() / BUNDLED_DETECTOR}, downloaded there if missing (this install has no bundled copy)"


def detector_model_help() -> str:
    """``--detector-model``'s help: the lookup order (the file in use now is in :func:`default_detector_note`)."""
    return (f"YuNet ONNX file, or the name of a known one to fetch (yunet_n_dynamic.onnx, yunet_s_640x640.onnx). "
            f"Without it: ${DETECTOR_ENV}, else the bundled {BUNDLED_DETECTOR}, else the cache "
            f"({cache_dir()}), else a download; the file a run uses now is named at the end of this help.")
