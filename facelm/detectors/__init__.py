"""Face detectors for ``predict``: YuNet (onnxruntime), ``yuface``, boxes from a file, or none (face crops).

:func:`create_detector` picks one from the command-line choices; every detector implements
:class:`FaceDetector` (``detect(image, name, frame) -> list[Detection]``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from facelm.detectors.base import MAX_DETECT_SIDE, Detection, FaceDetector, box_iou, nms
from facelm.detectors.boxes import BOX_KINDS, BoxesFileDetector, BoxLookupError, WholeImageDetector
from facelm.detectors.yunet import (
    ENV_MODEL,
    DetectorUnavailable,
    YuFaceDetector,
    YuNetDetector,
    _offline_message,
    download_yunet,
    find_yunet_model,
    requested_file,
    yuface_available,
)
from facelm.errors import UsageError

__all__ = [
    "BOX_KINDS",
    "DETECTORS",
    "BoxLookupError",
    "BoxesFileDetector",
    "Detection",
    "DetectorUnavailable",
    "FaceDetector",
    "WholeImageDetector",
    "YuFaceDetector",
    "YuNetDetector",
    "box_iou",
    "create_detector",
    "nms",
]

DETECTORS = ("auto", "yunet", "yuface")


def create_detector(name: str = "auto", *, model: str | Path | None = None, boxes: str | Path | None = None,
                    no_detect: bool = False, score_threshold: float = 0.6, max_side: int = MAX_DETECT_SIDE,
                    providers: list | None = None, threads: int = 1, download: bool = True,
                    info: Callable[[str], None] | None = None, boxes_kind: str = "auto") -> FaceDetector:
    """The detector for a ``predict`` run.

    Args:
        name: ``auto`` (the YuNet file: given, bundled or cached; else ``yuface`` if installed and no file was
            asked for; else download YuNet), ``yunet`` (the file, downloading it if needed) or ``yuface``.
        model: ``--detector-model`` (a YuNet ONNX file, or the name of a known one; see
            :func:`facelm.detectors.yunet.find_yunet_model` for the lookup order).
        boxes: ``--boxes FILE``: boxes from a file instead of a detector.
        boxes_kind: ``--boxes-kind``: ``auto``, ``detector`` or ``square`` (:data:`BOX_KINDS`).
        no_detect: ``--no-detect``: each image is one face crop.
        download: allow the download of the official YuNet file (off in tests).
        info: called with a one-line message when a file is downloaded.

    Raises:
        UsageError: conflicting options. DetectorUnavailable (exit 4): no detector can be set up.
    """
    if boxes is not None and no_detect:
        raise UsageError("`boxes` and `no_detect` cannot be used together")
    if boxes_kind not in BOX_KINDS:
        raise UsageError(f"`boxes_kind` must be one of {', '.join(BOX_KINDS)}, got {boxes_kind!r}")
    if boxes is not None:
        return BoxesFileDetector(boxes, kind=boxes_kind)
    if no_detect:
        return WholeImageDetector()
    if name not in DETECTORS:
        raise UsageError(f"unknown `detector` {name!r} (known: {', '.join(DETECTORS)})")
    if name == "yuface":
        return YuFaceDetector(score_threshold=score_threshold)
    path = find_yunet_model(model)
    explicit = bool(model) or bool(os.environ.get(ENV_MODEL))
    if path is None and name == "auto" and not explicit and yuface_available():
        return YuFaceDetector(score_threshold=score_threshold)
    if path is None:
        wanted = requested_file(model)
        if not download:
            raise DetectorUnavailable(_offline_message("downloads are disabled", wanted))
        if info:
            info(f"downloading the YuNet face detector {wanted} (Apache-2.0, libfacedetection.train) into the "
                 "cache ...")
        path = download_yunet(name=wanted)
    return YuNetDetector(path, score_threshold=score_threshold, max_side=max_side, providers=providers,
                         threads=threads)
