"""One way to set up a prediction run from ``facelm predict``'s options: the option checks, the providers and
thread plan, the models, the scheme converter, the detector and its box map, and the pipeline. ``facelm predict``
(CLI) and ``facelm.Landmarker`` (Python API) both build their run here, so an option means the same in both.

Errors name parameters in the library's words (`batch`); the CLI shows them as flags (``cli_message``).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facelm.errors import UsageError
from facelm.limits import MAX_BATCH, MAX_STREAMS, MAX_THREADS

__all__ = ["PredictRun", "build_predict_run", "check_predict_options"]


def _in_range(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> None:
    if integer:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not (ok and lo <= value <= hi):
            raise UsageError(f"`{name}` must be an int in [{lo:g}, {hi:g}], got {value!r}")
        return
    ok = isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value))
    if not (ok and lo <= value <= hi):
        raise UsageError(f"`{name}` must be in [{lo:g}, {hi:g}], got {value}")


def check_predict_options(*, batch: int = 32, stages: int | None = None, score_threshold: float = 0.6,
                          workers: int = 0, threads: int = 0, streams: int = 0, tta: str = "full",
                          boxes: Any = None, no_detect: bool = False, boxes_kind: str = "auto") -> None:
    """``UsageError`` (one line naming the parameter and what it accepts) for a bad prediction option."""
    _in_range("batch", batch, 1, MAX_BATCH, integer=True)
    if stages is not None and (isinstance(stages, bool) or not isinstance(stages, numbers.Integral)
                               or stages not in (1, 2)):
        raise UsageError(f"`stages` must be the int 1 or 2 (or not given: as the models say), got {stages!r}")
    _in_range("score_threshold", score_threshold, 0.0, 1.0)
    for name, v, hi in (("workers", workers, MAX_THREADS), ("threads", threads, MAX_THREADS),
                        ("streams", streams, MAX_STREAMS)):
        _in_range(name, v, 0, hi, integer=True)
    from facelm.runtime.pipeline import TTA_MODES

    if tta not in TTA_MODES:
        raise UsageError(f"`tta` must be one of {', '.join(TTA_MODES)}, got {tta!r}")
    if boxes is not None and no_detect:
        raise UsageError("`boxes` and `no_detect` cannot be used together")
    if boxes_kind not in ("auto", "detector", "square"):
        raise UsageError(f"`boxes_kind` must be auto, detector or square, got {boxes_kind!r}")


@dataclass
class PredictRun:
    """What ``build_predict_run`` set up. ``pipeline``: the ``facelm.runtime.Landmarker``; ``pair``: its models;
    ``detector``; ``converter``: the ``to_scheme`` converter or None; ``streams`` x ``threads``: the onnxruntime
    plan; ``box_map_note``: where the box map of detector boxes read from a file came from (or None)."""

    pipeline: Any
    pair: Any
    detector: Any
    converter: Any
    streams: int
    threads: int
    box_map_note: str | None


def build_predict_run(models: str | Path | None = None, *, detector: Any = "auto",
                      detector_model: str | Path | None = None, boxes: str | Path | None = None,
                      boxes_kind: str = "auto", no_detect: bool = False, stages: int | None = None,
                      device: str = "auto", precision: str = "auto", to_scheme: str | None = None,
                      scheme_maps: Iterable[str | Path] = (), score_threshold: float = 0.6,
                      box_map: dict | str | Path | None = None, level: bool = True, tta: str = "full",
                      turned_looks: bool = True, batch: int = 32, workers: int = 0, threads: int = 0,
                      streams: int = 0, exif: bool = True, label_shift: bool = True, rescue: bool = True,
                      box_looks: bool = True, keep_images: bool = False, info: Callable[[str], None] | None = None,
                      warn: Callable[[str], None] | None = None) -> PredictRun:
    """Check the options and build a prediction run (module docstring); arguments as ``facelm.Landmarker``'s.
    ``detector`` may also be a ``FaceDetector`` object; ``info``/``warn`` receive the detector's notes and the
    device fallback warning.

    Raises:
        UsageError: a bad option value. ModelError: models missing or not matching; no detector available.
    """
    from facelm.detectors import DETECTORS, create_detector
    from facelm.detectors.base import FaceDetector
    from facelm.detectors.boxmap import resolve_box_map
    from facelm.runtime import Landmarker, default_models_dir, load_models, resolve_providers
    from facelm.runtime.convert import scheme_converter
    from facelm.runtime.precision import check_precision
    from facelm.runtime.session import plan_threads
    from facelm.scheme_maps import load_map_file

    check_predict_options(batch=batch, stages=stages, score_threshold=score_threshold, workers=workers,
                          threads=threads, streams=streams, tta=tta, boxes=boxes, no_detect=no_detect,
                          boxes_kind=boxes_kind)
    precision = check_precision(precision)
    if not isinstance(detector, FaceDetector) and detector not in DETECTORS:
        raise UsageError(f"unknown `detector` {detector!r} (known: {', '.join(DETECTORS)}, or a FaceDetector)")
    box_map = _check_box_map(box_map)
    models, detector_model, boxes = (_check_path(n, v) for n, v in (("models", models),
                                                                     ("detector_model", detector_model),
                                                                     ("boxes", boxes)))
    scheme_maps = [_check_path("scheme_maps", f) for f in _path_list(scheme_maps)]
    for f in scheme_maps:
        load_map_file(f)
    providers = resolve_providers(device, warn=warn)
    streams, threads = plan_threads(providers, streams, threads)
    pair = load_models(models if models is not None else default_models_dir(), stages, providers, threads,
                       precision=precision)
    converter = scheme_converter(pair.scheme, to_scheme)
    if isinstance(detector, FaceDetector):
        det = detector
    else:
        det = create_detector(detector, model=detector_model, boxes=boxes, no_detect=no_detect,
                              score_threshold=score_threshold, providers=providers, threads=1,
                              boxes_kind=boxes_kind, info=info)
    note = None
    if box_map is None and getattr(det, "kind", None) == "detector":  # detector boxes from a file: the live map
        name = "yunet" if detector == "auto" or isinstance(detector, FaceDetector) else str(detector)
        box_map, where = resolve_box_map(pair.stage1.meta, name)
        note = f"{name} ({where})"
    looks = None
    if box_looks and level and not no_detect:  # a detector to look inside given boxes (Landmarker's box_looks)
        looks = det if det.live else _box_look_detector(detector, detector_model, boxes, score_threshold,
                                                           providers, warn)
    pipeline = Landmarker(pair, det, batch=batch, workers=workers, keep_images=keep_images, exif=exif,
                          streams=streams, box_map=box_map, level=level, tta=tta, turn_search=turned_looks,
                          label_shift=label_shift, rescue=rescue, box_looks=looks)
    return PredictRun(pipeline, pair, det, converter, streams, threads, note)


def _box_look_detector(detector: Any, model: str | Path | None, boxes: Any, score_threshold: float,
                       providers: list, warn: Callable[[str], None] | None) -> Any:
    """The live detector that looks inside boxes read from a file, or None (with a warning) when there is none
    without a download: boxes files never needed the detector, so they must not start needing the network."""
    from facelm.detectors import DetectorUnavailable, create_detector
    from facelm.detectors.base import FaceDetector

    if boxes is None:
        return None
    if isinstance(detector, FaceDetector):
        return detector if detector.live else None
    try:
        return create_detector(detector, model=model, score_threshold=score_threshold, providers=providers,
                               threads=1, download=False)
    except DetectorUnavailable as e:
        if warn:
            warn(f"given boxes are read as upright faces (no detector to look inside them: {e})")
        return None


def _check_path(name: str, value: Any) -> Any:
    """``value`` (None, or a path) unless it is not a path or an empty one (which would mean the current folder)."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise UsageError(f"`{name}` must be a path, got {type(value).__name__} {value!r}")
    if os.fspath(value) == "":
        raise UsageError(f"`{name}` is an empty path; give a file or folder (None for the default)")
    return value


def _path_list(paths: Any) -> list:
    """``scheme_maps``: one path, or an iterable of them (a string is one file, not its characters)."""
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    try:
        return list(paths)
    except TypeError:
        raise UsageError(f"`scheme_maps` must be a path or a list of paths, got {type(paths).__name__}") from None


def _check_box_map(box_map: Any) -> dict | None:
    """A box map given as a dict (checked as a file's: ``UsageError``) or a file (read: ``DataError``), or None."""
    from facelm.detectors.boxmap import check_box_map, read_box_map_file

    if box_map is None:
        return None
    if isinstance(box_map, dict):
        return check_box_map(dict(box_map), "`box_map`", UsageError)
    return read_box_map_file(_check_path("box_map", box_map))
