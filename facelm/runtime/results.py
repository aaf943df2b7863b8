"""What the prediction pipeline returns: a :class:`FaceResult` per face, an :class:`ImageResult` per image or
video frame (with its JSON record, docs/predict.md), and :func:`annotate` to draw them."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["FaceResult", "ImageResult", "annotate"]


@dataclass
class FaceResult:
    """One face: ``box`` (4,) detector/given box, ``score``, ``angle`` (degrees, eye line of the final
    landmarks), ``landmarks`` (L, 2) final image-pixel landmarks, ``stage1`` (L, 2) the stage-1 landmarks,
    ``square`` (3,) the stage-1 face square, ``crop_angle`` the rotation removed before stage 2 (stage-1 eye line),
    ``points``: after a conversion to a scheme only partly mapped from the model's (``runtime.convert``), the
    indices of that scheme's points that ``landmarks`` holds (None: all of them)."""

    box: np.ndarray
    score: float
    angle: float
    landmarks: np.ndarray
    stage1: np.ndarray
    square: np.ndarray
    crop_angle: float = 0.0
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
            rec["faces"].append(face)
        return rec


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
        cv2.putText(out, f"{f.score:.2f} {f.angle:+.0f}deg", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * t, (0, 200, 0), t, cv2.LINE_AA)
    return out
