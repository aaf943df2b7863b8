"""Packaging glue that pyproject.toml cannot express: ship the repository's ``models/`` folder (the default ONNX
models and their model card) inside the wheel as the package data ``facelm/_models``, so that an installed facelm
finds its default models the same way a source checkout finds ``models/`` (``facelm.runtime.default_models_dir``).
The bundled face detector in ``models/detectors/`` (Apache-2.0, with its LICENSE and NOTICE) travels the same way,
to ``facelm/_models/detectors``.
Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["facelm", "facelm.*"]), "facelm._models"],
    package_dir={"facelm._models": "models"},
    package_data={"facelm._models": ["*.onnx", "*.md",
                                     "detectors/*.onnx", "detectors/LICENSE", "detectors/NOTICE"]},
    include_package_data=False,
)
