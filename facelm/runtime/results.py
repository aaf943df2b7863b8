"""What the prediction pipeline returns: a :class:`FaceResult` per face, an :class:`ImageResult` per image or
video frame (with its JSON record, docs/predict.md), and :func:`annotate` to draw them."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from facelm.geometry import point_boxes

__all__ = ["DUPLICATE_OVERLAP", "TRUSTED_QUALITY", "FaceResult", "ImageResult", "annotate",
           "drop_duplicate_readings"]

#: a detected face whose landmarks' bounding box lies at least this much (share of its own area) inside another
#: face's, and which ranks lower (``drop_duplicate_readings``), is a second reading of that face (docs/predict.md,
#: step 6)
DUPLICATE_OVERLAP = 0.7
#: of two readings of one face, both at or above this quality, the better detection (detector score) keeps it
TRUSTED_QUALITY = 0.5


@dataclass
class FaceResult:
    """One face: ``box`` (4,) detector/given box, ``score``, ``angle`` (degrees, eye line of the final
    landmarks), ``landmarks`` (L, 2) final image-pixel landmarks, ``stage1`` (L, 2) the stage-1 landmarks,
    ``square`` (3,) the stage-1 face square, ``crop_angle`` the rotation removed before stage 2 (stage-1 eye line);
    ``pose`` head pose ``{"yaw", "pitch", "roll"}`` in degrees (68-point faces, ``facelm.headpose``), ``quality``
    in [0, 1] and the raw ``signals`` it comes from (``facelm.runtime.quality``), ``track`` the face's track id in
    a video (``facelm.runtime.tracking``); ``points``: after a conversion to a scheme only partly mapped from the
    model's (``runtime.convert``), the indices of that scheme's points that ``landmarks`` holds (None: all)."""

    box: np.ndarray
    score: float
    angle: float
    landmarks: np.ndarray
    stage1: np.ndarray
    square: np.ndarray
    crop_angle: float = 0.0
    pose: dict | None = None
    quality: float | None = None
    signals: dict | None = None
    track: int | None = None
    points: tuple[int, ...] | None = None


@dataclass
class ImageResult:
    """One image (or video frame) and its faces; ``error`` is set when it failed (then ``faces`` is empty).

    ``source_error`` marks failures of the source itself (missing path, empty folder), as opposed to a file that
    was found but could not be used.
    """

    name: str
    frame: int | None
    width: int | None
    height: int | None
    faces: list[FaceResult] = field(default_factory=list)
    error: str | None = None
    source_error: bool = False
    image: np.ndarray | None = None  # kept only when the caller asks (drawing)
    fps: float | None = None  # video frames: the video's frame rate (tracking, smoothing)

    def record(self, scheme: str | None = None, decimals: int = 2) -> dict:
        """The JSON record of ``facelm predict`` (docs/predict.md)."""
        rec: dict = {"image": self.name}
        if self.frame is not None:
            rec["frame"] = self.frame
        rec.update({"width": self.width, "height": self.height, "faces": [], "error": self.error})
        for f in self.faces:
            face = {"box": [round(float(v), 1) for v in f.box], "score": round(float(f.score), 4),
                    "angle": round(float(f.angle), 2),
                    "landmarks": [[round(float(x), decimals), round(float(y), decimals)] for x, y in f.landmarks]}
            if scheme:
                face["scheme"] = scheme
            if f.points is not None:
                face["points"] = list(f.points)
            face.update(_extras(f))
            rec["faces"].append(face)
        return rec


def drop_duplicate_readings(faces: list[FaceResult], overlap: float = DUPLICATE_OVERLAP) -> list[FaceResult]:
    """``faces`` without second readings of a face: a face whose landmarks' bounding box lies at least ``overlap``
    (share of its area) inside the box of another face's landmarks that ranks higher is dropped. A second, weaker
    detection next to a face (part of it, or a face in the background behind it) can have its points pulled onto
    that face, where they collapse into a small, wrong shape of quality near 0; two real faces side by side overlap
    far less. Rank: a quality of at least ``TRUSTED_QUALITY`` first, then the detector score, then the quality -
    when both readings are good (a weak detection whose square covers the face, read right by the second reading
    of doubtful faces), the face keeps the detection that found it best, and its box. Order is kept."""
    if len(faces) < 2:
        return faces
    boxes = [None if np.isnan(b).any() else b for b in point_boxes(np.stack([f.landmarks for f in faces]))]
    q = [f.quality if f.quality is not None else -1.0 for f in faces]
    rank = [(qi >= TRUSTED_QUALITY, f.score, qi) for qi, f in zip(q, faces)]
    keep = []
    for i, a in enumerate(boxes):
        dup = False
        for j, b in enumerate(boxes):
            if i == j or a is None or b is None or rank[j] <= rank[i]:
                continue
            area = np.prod(np.clip(a[2:] - a[:2], 0, None))
            inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
            if area > 0 and inter / area >= overlap:
                dup = True
                break
        if not dup:
            keep.append(faces[i])
    return keep


def _extras(f: FaceResult) -> dict:
    """The record's ``pose``, ``quality`` and ``track`` of a face (docs/predict.md); keys only where known."""
    out: dict = {}
    if f.pose is not None:
        out["pose"] = {k: round(float(f.pose[k]), 1) for k in ("yaw", "pitch", "roll")}
    if f.quality is not None:
        out["quality"] = round(float(f.quality), 3)
    if f.track is not None:
        out["track"] = int(f.track)
    return out


def annotate(image: np.ndarray, result: ImageResult, boundaries: dict | None = None) -> np.ndarray:
    """A BGR copy of ``image`` (RGB) with boxes, landmarks and angles drawn (for ``--draw``)."""
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    h, w = out.shape[:2]
    t = max(1, round(max(h, w) / 400))
    for f in result.faces:
        x1, y1, x2, y2 = (round(float(v)) for v in f.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 200, 0), t, cv2.LINE_AA)
        side = float(f.square[2]) if f.square is not None else max(x2 - x1, y2 - y1)
        r = max(1, round(side / 90))
        for idx in (boundaries or {}).values():
            pts = np.round(f.landmarks[list(idx)]).astype(np.int32)
            cv2.polylines(out, [pts], False, (255, 200, 0), max(1, t // 2), cv2.LINE_AA)
        for x, y in f.landmarks:
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(out, (round(float(x)), round(float(y))), r, (0, 0, 255), -1, cv2.LINE_AA)
        label = f"{f.score:.2f} {f.angle:+.0f}deg"
        if f.quality is not None:
            label += f" q{f.quality:.2f}"
        if f.track is not None:
            label = f"#{f.track} " + label
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * t, (0, 200, 0), t,
                    cv2.LINE_AA)
        if f.pose is not None:
            _draw_pose(out, f, w, h, t)
    return out


def _draw_pose(out: np.ndarray, f: FaceResult, w: int, h: int, t: int) -> None:
    """The face's axes from the nose tip (x red, y green, out of the face blue) and its yaw/pitch/roll."""
    from facelm.headpose import pose_axes

    try:
        ax = pose_axes(f.landmarks, f.pose, w, h, length=45.0)
    except (ValueError, np.linalg.LinAlgError):
        return
    if not np.isfinite(ax).all():
        return
    o = tuple(round(float(v)) for v in ax[0])
    for end, colour in zip(ax[1:], ((0, 0, 255), (0, 200, 0), (255, 0, 0))):  # BGR
        cv2.line(out, o, tuple(round(float(v)) for v in end), colour, max(1, t), cv2.LINE_AA)
    x1, y2 = round(float(f.box[0])), round(float(f.box[3]))
    p = f.pose
    cv2.putText(out, f"y{p['yaw']:+.0f} p{p['pitch']:+.0f} r{p['roll']:+.0f}", (x1, min(h - 4, y2 + 12 * t)),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4 * t, (255, 0, 0), t, cv2.LINE_AA)
