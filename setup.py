"""Packaging glue that pyproject.toml cannot express: ship the repository's ``models/`` folder (the default ONNX
models and their model card) inside the wheel as the package data ``facelm/_models``, so that an installed facelm
finds its default models the same way a source checkout finds ``models/`` (``facelm.runtime.default_models_dir``).
The bundled face detector in ``models/detectors/`` (Apache-2.0, with its LICENSE and NOTICE) travels the same way,
to ``facelm/_models/detectors``.
Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    """A build folder left from an earlier build (``build/lib``) keeps files that were since deleted from
    ``models/``; setuptools would put them into the wheel beside the new ones (a replaced model shipped twice, and
    ``predict`` refusing two models for one stage). Start the package data from an empty folder every time."""

    def run(self):
        shutil.rmtree(Path(self.build_lib) / "facelm" / "_models", ignore_errors=True)
        super().run()


setup(
    cmdclass={"build_py": BuildPy},
    packages=[*find_packages(include=["facelm", "facelm.*"]), "facelm._models"],
    package_dir={"facelm._models": "models"},
    package_data={"facelm._models": ["*.onnx", "*.md",
                                     "detectors/*.onnx", "detectors/LICENSE", "detectors/NOTICE"]},
    include_package_data=False,
)
