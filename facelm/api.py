"""The Python front door (docs/python.md)::

    import facelm

    lm = facelm.Landmarker()            # the shipped models, YuNet, device auto
    for face in lm("photo.jpg"):        # a path, an RGB array, a PIL image or encoded bytes
        print(face.box, face.score, face.angle, face.landmarks.shape)
    for result in lm.batch(["a.jpg", "photos/"]):   # streams, batched across images, like `facelm predict`
        print(result.image, len(result.faces), result.error)

Everything ``facelm predict`` does is a keyword: ``models=``, ``detector=``, ``detector_model=``, ``boxes=``,
``no_detect=``, ``stages=``, ``device=``, ``precision=``, ``to_scheme=``, ``tta=``, ``level=``, ... (:class:`Landmarker`).

A :class:`Face` wraps the pipeline's ``facelm.runtime.results.FaceResult`` and answers every attribute it has, so a
field added to the pipeline's faces is a field of the API's faces; :meth:`Face.to_dict` is the face's JSON record,
the same as ``facelm predict`` writes. The models run in onnxruntime: importing this module loads neither torch nor
onnxruntime; making a :class:`Landmarker` loads onnxruntime (never torch).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from facelm.errors import DataError, ImageError, UsageError

__all__ = ["Face", "ImageFaces", "Landmarker"]


class Face:
    """One face: ``box`` (4,) x1, y1, x2, y2 (the detector's box, or the given one), ``score``, ``angle`` (degrees,
    eye line; positive = turned clockwise on screen), ``landmarks`` (L, 2) image pixels, ``scheme`` (the landmarks'
    scheme name), and every other attribute of the pipeline's face (``stage1``, ``square``, ``points`` after a
    partial ``to_scheme``, and any added later)."""

    __slots__ = ("_face", "scheme", "_record")

    def __init__(self, face: Any, scheme: str, record: dict):
        self._face, self.scheme, self._record = face, scheme, record

    def __getattr__(self, name: str) -> Any:
        try:
            return getattr(object.__getattribute__(self, "_face"), name)
        except AttributeError:
            raise AttributeError(f"'Face' object has no attribute {name!r}") from None

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {n for n in dir(self._face) if not n.startswith("_")})

    def to_dict(self) -> dict:
        """The face's JSON record, as in ``facelm predict``'s output (docs/predict.md)."""
        return dict(self._record)

    def __repr__(self) -> str:
        box = ", ".join(f"{float(v):.1f}" for v in self._face.box)
        return (f"Face(box=[{box}], score={float(self._face.score):.3f}, angle={float(self._face.angle):.1f}, "
                f"landmarks={len(self._face.landmarks)} x 2, scheme={self.scheme!r})")


class ImageFaces:
    """The result for one image (or video frame) of :meth:`Landmarker.batch`: ``image`` (its name), ``frame``,
    ``width``, ``height``, ``faces`` (a list of :class:`Face`) and ``error`` (None, or why it failed: then
    ``faces`` is empty). Iterating over it gives its faces; :meth:`to_dict` is predict's JSON record."""

    __slots__ = ("result", "faces", "_record")

    def __init__(self, result: Any, scheme: str):
        self.result = result
        self._record = result.record(scheme)
        self.faces = [Face(f, scheme, r) for f, r in zip(result.faces, self._record["faces"])]

    image = property(lambda self: self.result.name, doc="the image's name (the path as given or found)")
    frame = property(lambda self: self.result.frame, doc="the video frame number, else None")
    width = property(lambda self: self.result.width)
    height = property(lambda self: self.result.height)
    error = property(lambda self: self.result.error, doc="None, or the one-line reason this image failed")

    def to_dict(self) -> dict:
        """The JSON record of ``facelm predict`` for this image (docs/predict.md)."""
        return {**self._record, "faces": [dict(f) for f in self._record["faces"]]}

    def __iter__(self) -> Iterator[Face]:
        return iter(self.faces)

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int) -> Face:
        return self.faces[i]

    def __repr__(self) -> str:
        what = f"error={self.error!r}" if self.error else f"{len(self.faces)} faces"
        return f"ImageFaces({self.image!r}, {what})"


def _pil_to_array(image: Any) -> np.ndarray:
    """A PIL image as an RGB uint8 array; 16- and 32-bit integer images (modes ``I;16``, ``I``, ...) scaled to 8
    bits as facelm's file decoder scales 16-bit files (``v / 257``), not clipped by ``convert("RGB")``."""
    if str(getattr(image, "mode", "")).startswith("I"):
        a = np.clip(np.asarray(image), 0, 65535).astype(np.float32)
        a = (a / 257.0 + 0.5).astype(np.uint8)
        return a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def _is_pil(image: Any) -> bool:
    return hasattr(image, "convert") and hasattr(image, "size") and not isinstance(image, np.ndarray)


def _as_rgb(image: Any, exif: bool) -> tuple[np.ndarray, str]:
    """(RGB uint8 array, name) of what ``Landmarker.__call__`` accepts; ``ImageError`` for unreadable images."""
    from facelm.imageio import ImageReadError, decode_image, read_image

    if isinstance(image, (str, os.PathLike)):
        if os.fspath(image) in ("", b""):
            raise UsageError("`image` is an empty path")
        try:
            return read_image(image, exif=exif), str(image)
        except ImageReadError as e:
            raise ImageError(image, str(e)) from None
    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            return decode_image(image, exif=exif), "<bytes>"
        except ImageReadError as e:
            raise ImageError("<bytes>", str(e)) from None
    given = image
    if _is_pil(image):
        image = _pil_to_array(image)
    try:
        a = np.asarray(image)
    except (TypeError, ValueError):  # a ragged list
        a = np.zeros(())
    shape, dtype = a.shape, a.dtype  # as given, for the message
    if a.ndim == 3 and a.shape[2] == 1:  # grayscale with a channel axis
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or min(a.shape[:2]) < 1:
        what = type(given).__name__ + (f" {dtype} of shape {shape}" if len(shape) else "")
        raise UsageError("`image` must be a path, encoded bytes, a PIL image or an (H, W, 3) uint8 RGB array "
                         f"((H, W) and (H, W, 1) grayscale and (H, W, 4) RGBA are converted), got {what}")
    return np.ascontiguousarray(a), "<array>"


def _check_boxes(boxes: Any) -> np.ndarray:
    """``boxes`` of a call as an ``(N, 4)`` float64 array, checked as ``--boxes`` files are (x1 < x2, y1 < y2, finite,
    within +-``MAX_COORD`` pixels); ``UsageError`` naming ``boxes`` otherwise."""
    from facelm.detectors.boxes import MAX_COORD

    usage = "`boxes` must be an (N, 4) array of x1, y1, x2, y2 pixel numbers"
    if isinstance(boxes, (str, bytes, bytearray, dict)) or _is_pil(boxes):
        raise UsageError(f"{usage}, got {type(boxes).__name__} {boxes!r:.60}")
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"{usage}, got {type(boxes).__name__} {boxes!r:.60}") from None
    if b.size == 0 and b.ndim <= 2 and (b.ndim < 2 or b.shape[1] in (0, 4)):
        return np.zeros((0, 4))
    if b.ndim != 2 or b.shape[1] != 4:
        raise UsageError(f"{usage}, got shape {b.shape}")
    for i, row in enumerate(b):
        if not np.isfinite(row).all() or not (row[2] > row[0] and row[3] > row[1]):
            raise UsageError(f"`boxes` row {i}: box {row.tolist()} is empty or not finite (expected x1 < x2, "
                             "y1 < y2)")
        if np.abs(row).max() > MAX_COORD:
            raise UsageError(f"`boxes` row {i}: box {row.tolist()} lies beyond +-{MAX_COORD:g} pixels")
    return b


class Landmarker:
    """Faces and their landmarks, with everything ``facelm predict`` can do one keyword away.

    Args:
        models: folder with the stage-1 (and stage-2) ONNX models; default the shipped ones.
        detector: ``auto``, ``yunet``, ``yuface``, or a ``facelm.detectors.FaceDetector`` object.
        detector_model: a YuNet ONNX file (default: the bundled one).
        boxes: a boxes file (JSON/JSONL/CSV, as ``--boxes``) instead of a detector; ``boxes_kind`` as
            ``--boxes-kind``.
        no_detect: each image is one face crop.
        stages: 1 or 2 (default: as the models' metadata say).
        device: ``auto`` (CUDA when usable), ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (the int8 models where this CPU runs them faster, docs/predict.md "Precision"),
            ``fp32`` or ``int8``; ``self.models.precision`` / ``.precision_reason`` say what was chosen and why.
        to_scheme: convert the landmarks to this scheme (e.g. ``"5pt"``; docs/predict.md, "Scheme conversion");
            ``scheme_maps``: extra scheme-map files for it.
        score_threshold, box_map, level, tta, turned_looks, rescue, box_looks, label_shift, batch, workers,
        threads, streams, exif:
            as the ``facelm predict`` options of the same names (``box_map``: a dict or a file from
            ``facelm fit-box-map --dry-run``; ``turned_looks=False``: an image with no face found upright is not
            searched turned, which bounds the time spent on images without faces; ``rescue=False``: faces of low
            quality are not read again from other crops, docs/predict.md step 2b; ``box_looks=False``: faces
            from given boxes (``boxes``, or ``boxes=`` of a call) start upright, without the detector looking
            inside them for which way up they are; ``label_shift=False``: the
            networks' mirror-symmetric reading, without the models' label shift, docs/predict.md step 5).

    Raises:
        UsageError: a bad option value. ModelError: models missing or not matching; no detector available.
    """

    def __init__(self, models: str | Path | None = None, *, detector: Any = "auto",
                 detector_model: str | Path | None = None, boxes: str | Path | None = None,
                 boxes_kind: str = "auto", no_detect: bool = False, stages: int | None = None,
                 device: str = "auto", precision: str = "auto",
                 to_scheme: str | None = None, scheme_maps: Iterable[str | Path] = (),
                 score_threshold: float = 0.6,
                 box_map: dict | str | Path | None = None, level: bool = True, tta: str = "full",
                 turned_looks: bool = True, batch: int = 32, workers: int = 0, threads: int = 0, streams: int = 0,
                 exif: bool = True, label_shift: bool = True, rescue: bool = True, box_looks: bool = True):
        from facelm.runtime.setup import build_predict_run

        run = build_predict_run(models, detector=detector, detector_model=detector_model, boxes=boxes,
                                boxes_kind=boxes_kind, no_detect=no_detect, stages=stages, device=device,
                                precision=precision, to_scheme=to_scheme, scheme_maps=scheme_maps,
                                score_threshold=score_threshold, box_map=box_map, level=level, tta=tta,
                                turned_looks=turned_looks, batch=batch,
                                workers=workers, threads=threads, streams=streams, exif=exif,
                                label_shift=label_shift, rescue=rescue, box_looks=box_looks, warn=_warn)
        self.models, self._conv, self.pipeline, self.exif = run.pair, run.converter, run.pipeline, exif

    @property
    def scheme(self) -> str:
        """The scheme of the landmarks this landmarker returns (the models', or ``to_scheme``)."""
        return self._conv.name if self._conv is not None else self.models.scheme.name

    def _wrap(self, res: Any) -> ImageFaces:
        return ImageFaces(self._conv.image(res) if self._conv is not None else res, self.scheme)

    def __call__(self, image: Any, *, boxes: Any = None, boxes_kind: str = "square") -> list[Face]:
        """The faces of one image: a path, encoded bytes, a PIL image or an ``(H, W, 3)`` uint8 **RGB** array
        (OpenCV's ``imread`` gives BGR: convert it). ``boxes`` ``(N, 4)`` x1, y1, x2, y2: the faces to use instead
        of detecting (``boxes_kind``: ``square`` = face squares in the training convention, ``detector`` = boxes
        of the landmarker's detector, mapped by its box map).

        Raises:
            ImageError: the image cannot be read (``.path`` names it, ``.reason`` says why).
            DataError: another failure of this image (e.g. not in the ``boxes`` file).
        """
        from facelm.runtime.results import ImageResult

        if boxes_kind not in ("square", "detector"):
            raise UsageError(f"`boxes_kind` must be square or detector, got {boxes_kind!r}")
        b = None if boxes is None else _check_boxes(boxes)
        rgb, name = _as_rgb(image, self.exif)
        if b is None:
            res = self.pipeline.predict_image(rgb, name)
            if res.error:
                raise DataError(f"{name}: {res.error}")
        else:
            faces = self.pipeline.predict_boxes(rgb, b, "face-square" if boxes_kind == "square" else "detector")
            res = ImageResult(name, None, rgb.shape[1], rgb.shape[0], faces)
        return self._wrap(res).faces

    def batch(self, sources: Any, *, recursive: bool = False, vid_stride: int = 1) -> Iterator[ImageFaces]:
        """Stream :class:`ImageFaces` for many images, in input order, batched across images like ``facelm
        predict``: ``sources`` is a path, folder, glob, list file or video, or one image (encoded bytes, an RGB
        array, a PIL image), or an iterable (a generator is fine) of those. An unreadable image gives a result
        with ``error`` set; the stream goes on. Bad arguments raise ``UsageError`` here, at the call, not when the
        stream is first read."""
        if isinstance(vid_stride, bool) or not isinstance(vid_stride, numbers.Integral) or vid_stride < 1:
            raise UsageError(f"`vid_stride` must be an int >= 1, got {vid_stride!r}")
        if isinstance(sources, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray)) or _is_pil(sources):
            sources = [sources]
        elif isinstance(sources, (list, tuple)):
            pass
        elif sources is None or not isinstance(sources, Iterable):
            raise UsageError("`sources` must be a path, an image or an iterable of them, got "
                             f"{type(sources).__name__}")
        for src in sources if isinstance(sources, (list, tuple)) else ():
            if isinstance(src, (str, os.PathLike)) and os.fspath(src) in ("", b""):
                raise UsageError("`sources` holds an empty path (give '.' for the current folder)")
        return self._run(_items(sources, bool(recursive), int(vid_stride), self.exif))

    def _run(self, items: Iterable[Any]) -> Iterator[ImageFaces]:
        """Results for ready ``facelm.sources.SourceItem`` objects (``batch``, the integrations)."""
        for res in self.pipeline.run(items):
            yield self._wrap(res)

    def __repr__(self) -> str:
        s1, s2 = self.models.stage1, self.models.stage2
        return (f"Landmarker({s1.path}{' + ' + str(s2.path) if s2 else ''}, scheme={self.scheme!r}, "
                f"detector={self.pipeline.detector.name!r}, providers={s1.providers})")


def _items(sources: Iterable[Any], recursive: bool, vid_stride: int, exif: bool) -> Iterator[Any]:
    from facelm.sources import SourceItem, iter_sources

    for i, src in enumerate(sources):
        if isinstance(src, (str, os.PathLike)):
            yield from iter_sources([os.fspath(src)], recursive=recursive, vid_stride=vid_stride)
        else:
            name = f"<{'bytes' if isinstance(src, (bytes, bytearray, memoryview)) else 'array'} {i}>"
            try:
                rgb, _ = _as_rgb(src, exif)
                yield SourceItem(name, Path(name), image=rgb)
            except (UsageError, ImageError) as e:
                yield SourceItem(name, Path(name), error=str(e))


def _warn(msg: str) -> None:
    import warnings

    warnings.warn(msg.replace("`", ""), RuntimeWarning, stacklevel=3)
