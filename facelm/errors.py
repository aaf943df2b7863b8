"""Exit codes and the one exception type the CLI turns into a clear one-line message."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode", "FacelmError", "UsageError", "DataError", "ModelError", "ImageError"]


class ExitCode(IntEnum):
    """Process exit codes, documented in docs/cli.md."""

    OK = 0
    PARTIAL = 1  # the run finished but something failed (faces skipped, images unreadable, --fail-above hit)
    USAGE = 2  # bad command line or option values (Click's own code too)
    DATA = 3  # bad or unusable input data: nothing usable, invalid manifest, empty folder
    MODEL = 4  # model, checkpoint or metadata missing, corrupt or not matching the data
    DIVERGED = 5  # training stopped on a NaN/inf loss (the last good checkpoint is kept)
    INTERRUPTED = 130  # Ctrl-C (a resumable checkpoint was written where applicable)


class FacelmError(Exception):
    """An error with a user-facing one-line message and an exit code."""

    code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, code: ExitCode | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(FacelmError):
    code = ExitCode.USAGE


class DataError(FacelmError):
    code = ExitCode.DATA


class ModelError(FacelmError):
    code = ExitCode.MODEL


class ImageError(DataError):
    """An image that cannot be used (missing, empty, not decodable, truncated): ``path`` names it, ``reason``
    says why. The Python API (``facelm.Landmarker``) raises it for one image; batch runs give an error record
    instead."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason
