"""The face-detector interface, the detection record and box helpers shared by the detectors.

Boxes are ``[x1, y1, x2, y2]`` in image pixels (0-based, pixel centres at integers, x right, y down): the corners
of the rectangle the detector reports. A detector's box convention (how tight, where its centre sits relative to
the landmarks) differs from the face square the landmark models were trained on; ``facelm.detectors.boxmap``
fits and stores the mapping.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "MAX_DETECT_SIDE",
    "MIN_RETRY_SIDE",
    "PAD_FRACTION",
    "Detection",
    "FaceDetector",
    "box_iou",
    "detect_with_retries",
    "downscale_for_detection",
    "nms",
]

#: Images whose longer side exceeds this are shrunk (INTER_AREA) for detection only; boxes are mapped back.
MAX_DETECT_SIDE = 1280

#: Faces bigger than the detector's anchors (close-ups): the image is also searched at half size, quarter size, ...
#: while its shorter side stays at least this (``detect_with_retries``; docs/cli.md)
MIN_RETRY_SIDE = 160

#: The largest face (detector box side, px) whose first-look box is kept over a smaller size's box of the same face
RELIABLE_SIDE = 320

#: A face cut by the image's edge (a face crop): the smallest size searched is searched again inside a black border of
#: this fraction of its longer side (``detect_with_retries``)
PAD_FRACTION = 0.25


@dataclass
class Detection:
    """One detected face.

    Attributes:
        box: ``(4,)`` float ``[x1, y1, x2, y2]`` in image pixels.
        score: detector confidence in [0, 1] (1.0 for boxes that were given, not detected).
        keypoints: optional ``(K, 2)`` detector key points in image pixels (YuNet: 5).
        kind: how the face square is derived from ``box``: ``"detector"`` (through the model's box map),
            ``"face-square"`` (the box already is the face square: boxes files) or ``"crop"`` (the box is the
            whole model crop: ``--no-detect``).
    """

    box: np.ndarray
    score: float = 1.0
    keypoints: np.ndarray | None = None
    kind: str = "detector"
    extra: dict = field(default_factory=dict)


class FaceDetector(abc.ABC):
    """A face detector: ``detect(image, name, frame) -> list[Detection]``.

    ``image`` is ``(H, W, 3)`` uint8 RGB; ``name`` (the SOURCE name) and ``frame`` (video frame number or None)
    identify it for detectors that look boxes up; the others ignore them. Implementations must be safe to call
    from several threads at once.
    """

    #: short name; the key of the box map stored in the stage-1 model (``"yunet"``, ``"yuface"``, ...)
    name: str = "detector"
    #: True for detectors that look at the pixels (not boxes files): the pipeline may run them again on a face's
    #: patch turned by 90, 180 and 270 degrees to find which way up the face is
    live: bool = False

    @abc.abstractmethod
    def detect(self, image: np.ndarray, name: str | None = None, frame: int | None = None) -> list[Detection]:
        ...

    def detect_once(self, image: np.ndarray) -> list[Detection]:
        """One plain look at ``image`` (the orientation search compares the scores of such looks): detectors with
        extra looks (``detect_with_retries``) skip them here; others just detect."""
        return self.detect(image)

    def describe(self) -> str:
        """One line for stderr: which detector, which model file."""
        return self.name


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes ``a`` (N, 4) and ``b`` (M, 4), both ``[x1, y1, x2, y2]``; returns (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int = 0) -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best first (at most ``top_k`` if > 0)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if top_k and len(keep) >= top_k:
            break
        if order.size == 1:
            break
        iou = box_iou(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def downscale_for_detection(image: np.ndarray, max_side: int = MAX_DETECT_SIDE) -> tuple[np.ndarray, float]:
    """Shrink ``image`` so its longer side is at most ``max_side`` (for detection only).

    Returns (image, factor) with ``factor = small / original`` (1.0 when unchanged); a detection box ``b`` in the
    small image is ``(b + 0.5) / factor - 0.5`` in the original (pixel-centre convention).
    """
    h, w = image.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return image, 1.0
    f = max_side / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return small, nw / w if w >= h else nh / h


def _area(b: np.ndarray) -> float:
    return max(float((b[2] - b[0]) * (b[3] - b[1])), 1e-9)


def _overlap(a: np.ndarray, b: np.ndarray, iou_threshold: float, inside: float = 0.6) -> bool:
    """Whether boxes ``a`` and ``b`` are one face: IoU above ``iou_threshold``, or one of the two lies more than
    ``inside`` within the other."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    return inter / min(_area(a), _area(b)) > inside or box_iou(a[None], b[None])[0, 0] > iou_threshold


def _merge_scales(dets: list[Detection], iou_threshold: float) -> list[Detection]:
    """Best-first greedy merge of detections from several looks: a detection is dropped when it is the same face
    as a better one (``_overlap``: the full-size look can report a weak box on part of a face that a smaller size
    finds whole, and the reverse)."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if not any(_overlap(d.box, k.box, iou_threshold) for k in kept):
            kept.append(d)
    return kept


def _near_border(det: Detection, w: int, h: int, margin: float) -> bool:
    x1, y1, x2, y2 = det.box
    return x1 <= margin * w or y1 <= margin * h or x2 >= (1 - margin) * w - 1 or y2 >= (1 - margin) * h - 1


def _shifted(det: Detection, dx: float, dy: float) -> Detection:
    kps = None if det.keypoints is None else det.keypoints - np.array([dx, dy])
    return Detection(box=det.box - np.array([dx, dy, dx, dy]), score=det.score, keypoints=kps, kind=det.kind,
                     extra=dict(det.extra))


def _same_face_whole(first: Detection, other: Detection, iou_threshold: float, factor: float = 1.0,
                     part: float = 0.6) -> bool:
    """Whether the first look's ``first`` is the face ``other`` found whole, at a size the detector handles well:
    they overlap (``_overlap``), ``first`` is not a part of it (its area is at least ``part`` x ``other``'s) and its
    longer side in the first look's pixels (``factor`` = first look / original) is at most ``RELIABLE_SIDE``."""
    a, b = first.box, other.box
    if max(a[2] - a[0], a[3] - a[1]) * factor > RELIABLE_SIDE:
        return False
    return _area(a) >= part * _area(b) and _overlap(a, b, iou_threshold)


def detect_with_retries(detect_at, image: np.ndarray, max_side: int = MAX_DETECT_SIDE,
                        min_retry_side: int = MIN_RETRY_SIDE, iou_threshold: float = 0.3,
                        pad: float = PAD_FRACTION) -> list[Detection]:
    """Detect faces of any size: ``detect_at(small, factor)`` on ``image`` shrunk to ``max_side``, then on that
    image halved, and halved again, while its shorter side stays at least ``min_retry_side`` (0: the first size
    only); the detections of all sizes are merged best-first (``_merge_scales``), except that a face the first look
    found whole keeps the first look's box (``_same_face_whole``). When that finds no face, or a face
    whose box reaches within 2% of the image's edge, the smallest of those sizes is searched once more with a black
    border of ``pad`` x its side around it (0: never): its box replaces an edge face's box it overlaps, and its other
    faces are merged in.

    A face that fills much of a large frame (a close-up, a tight crop; over ~500 px for YuNet) is bigger than the
    detector's largest anchors: it is missed, or found as a weak box on part of the face. At a smaller size it is
    found whole and scores higher. A face cut by the frame (a face crop) is found better with a border around it.
    The smaller sizes cost at most a third more than the first (1/4 + 1/16 + ...). ``detect_at`` gets the image and
    ``factor = small / original`` and returns detections in original pixels.
    """
    h0, w0 = image.shape[:2]
    small, f = downscale_for_detection(image, max_side)
    f0 = f
    found = detect_at(small, f)
    if min_retry_side <= 0:
        return found
    more: list[Detection] = []
    while min(small.shape[:2]) // 2 >= min_retry_side:
        h, w = small.shape[:2]
        nw, nh = w // 2, h // 2
        f *= nw / w if w >= h else nh / h
        small = cv2.resize(small, (nw, nh), interpolation=cv2.INTER_AREA)
        more += detect_at(small, f)
    # a face the first look found whole keeps the first look's box (its score and box are what the box map and the
    # orientation search were measured on); a smaller size's box counts where the first look saw only part of it
    more = [d for d in more if not any(_same_face_whole(g, d, iou_threshold, f0) for g in found)]
    if more:
        found = _merge_scales(found + more, iou_threshold)
    if pad > 0 and (not found or any(_near_border(d, w0, h0, 0.02) for d in found)):
        h, w = small.shape[:2]
        p = round(pad * max(h, w))
        framed = cv2.copyMakeBorder(small, p, p, p, p, cv2.BORDER_CONSTANT, value=0)
        # detect_at maps framed-image pixels as if they were `small`'s: take the border's offset off again
        extra = [_shifted(d, p / f, p / f) for d in detect_at(framed, f)]
        if extra:
            # a face at the edge: the framed look's box wins (the first look's box stops at the edge, the face
            # square built from it is too small and off-centre), whatever the scores
            eb = np.stack([e.box for e in extra])
            used: set[int] = set()
            for n, d in enumerate(found):
                if not _near_border(d, w0, h0, 0.02):
                    continue
                iou = box_iou(d.box[None], eb)[0]
                j = int(np.argmax(iou))
                if iou[j] > iou_threshold and j not in used:
                    found[n] = extra[j]
                    used.add(j)
            found = _merge_scales(found + [e for j, e in enumerate(extra) if j not in used], iou_threshold)
    return found


def scale_back(points: np.ndarray, factor: float) -> np.ndarray:
    """Map coordinates from a ``downscale_for_detection`` image back to the original (pixel-centre convention)."""
    if factor == 1.0:
        return points
    return (np.asarray(points, dtype=np.float64) + 0.5) / factor - 0.5
