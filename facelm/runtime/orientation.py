"""Which way up is a detected face? (step 2b of ``facelm.runtime.pipeline``; docs/predict.md)

The detector runs again on the face's patch turned by 90, 180 and 270 degrees, and the quarter turn whose central
detection scores highest wins: YuNet finds faces at any angle but scores them highest upright, while its key points
always come out in an upright layout, so they cannot tell the turn themselves. Within the winning quarter turn the
detector's eye line gives the rest of the angle. A detection that already scores ``ORIENT_SKIP_SCORE`` or more is
taken as upright without the search (the search costs more than everything else predict does per face).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facelm.detectors.base import Detection, FaceDetector, nms
from facelm.detectors.boxmap import boxes_to_squares
from facelm.geometry import (
    apply_affine,
    compose_affine,
    eye_angle,
    invert_affine,
    turn_image,
    turn_matrix,
    warp_crop,
)

__all__ = ["BOX_LOOK_MAX_SIDE", "BOX_LOOK_PATCH", "BOX_LOOK_SHIFT", "DIAGONAL_LOOK_MAX_AREA", "ORIENT_MAX_SIDE",
           "ORIENT_PATCH", "ORIENT_SKIP_SCORE", "TURNED_LOOKS", "find_box_orientation", "find_orientation",
           "find_turned_faces", "look_matrix", "turned_look", "turned_square", "unrot90"]

#: half-side of the patch the detector looks at again to find which way up a face is, in detector-box sides
ORIENT_PATCH = 1.0
#: None: the patch is searched at full size. A number shrinks it to at most that side first (2.3x faster predict
#: on the 300-W val photos, same upright NME), but off by default: at 45/135-degree turns it read 8-9 of ~39 w300
#: val faces the wrong way up against 2-3 at full size (docs/benchmarks.md)
ORIENT_MAX_SIDE: int | None = None
#: a detection scoring at least this is taken as upright (its turn: the detector's eye line) without the search:
#: YuNet scores faces highest upright. Of 636 detections of held-out photos turned by 90-270 degrees (w300, MTFL,
#: InfAnFace, YouTube Faces val) one scored this high, against 13-72% of the upright ones per set (docs/predict.md);
#: a face let through the wrong way up is still caught by the levelling's disagreement check (step 2b), and at
#: 45/315 degrees the eye line gives the angle either way. None: always search

ORIENT_SKIP_SCORE: float | None = 0.93


def find_orientation(detector: FaceDetector, image: np.ndarray, det: Detection, square: np.ndarray,
                     box_map: dict | None) -> tuple[np.ndarray, float]:
    """(face square, turn in degrees) of the detection ``det`` of ``image`` whose face square is ``square``.

    The detector runs again on the face's patch turned by 90, 180 and 270 degrees (and 0 when shrunk), and the turn
    whose central detection scores highest wins. The square is then ``box_map`` applied to that upright detection,
    mapped back to the image. A detection scoring ``ORIENT_SKIP_SCORE`` or more skips the search.
    """
    if ORIENT_SKIP_SCORE is not None and det.score >= ORIENT_SKIP_SCORE:
        return square, _look_turn(det.keypoints, 0)
    h, w = image.shape[:2]
    b = np.asarray(det.box, dtype=np.float64)
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    r = ORIENT_PATCH * max(b[2] - b[0], b[3] - b[1])
    x0, y0 = max(0, int(math.floor(cx - r))), max(0, int(math.floor(cy - r)))
    x1, y1 = min(w, int(math.ceil(cx + r)) + 1), min(h, int(math.ceil(cy + r)) + 1)
    patch = image[y0:y1, x0:x1]
    ph, pw = patch.shape[:2]
    shrink = ORIENT_MAX_SIDE is not None and max(ph, pw) > ORIENT_MAX_SIDE
    if shrink:  # (ORIENT_MAX_SIDE); the upright patch is then scored again at the same size, for a fair vote
        f = ORIENT_MAX_SIDE / max(ph, pw)
        nw, nh = max(1, round(pw * f)), max(1, round(ph * f))
        patch = cv2.resize(patch, (nw, nh), interpolation=cv2.INTER_AREA)
        fx, fy = nw / pw, nh / ph
        ph, pw = nh, nw
    else:
        fx = fy = 1.0
    best = (det.score, 0, square, det.keypoints)
    for k in (0, 1, 2, 3) if shrink else (1, 2, 3):  # np.rot90 by k: the patch turns counter-clockwise by 90k
        rot = np.ascontiguousarray(np.rot90(patch, k))
        # one plain look per turn (the detector's extra looks would add votes of their own)
        found = detector.detect_once(rot)
        if not found:
            continue
        rh, rw = rot.shape[:2]
        centre = np.array([(rw - 1) / 2, (rh - 1) / 2])
        d = min(found, key=lambda g: np.linalg.norm((g.box[:2] + g.box[2:]) / 2 - centre))
        if k == 0:  # the upright vote at the shrunk size; the square stays the full-size detection's
            best = (d.score, 0, square, det.keypoints)
            continue
        if d.score <= best[0]:
            continue
        sq = boxes_to_squares(np.asarray(d.box, dtype=np.float64)[None], box_map)[0]
        # back from the turned patch to the image: undo k counter-clockwise quarter turns, the shrinking (pixel
        # centres), then the crop
        px, py = unrot90(sq[0], sq[1], k, pw, ph)
        px, py = (px + 0.5) / fx - 0.5, (py + 0.5) / fy - 0.5
        best = (d.score, k, np.array([px + x0, py + y0, sq[2] * 2 / (fx + fy)]), d.keypoints)
    return best[2], _look_turn(best[3], 90 * best[1])


#: half-side of the patch the detector looks at inside a given face square (:func:`find_box_orientation`), in square
#: sides: a YuNet box is about 1.15 face-square sides, so this is ``ORIENT_PATCH`` detector box sides
BOX_LOOK_PATCH = 1.15
#: the patch of :func:`find_box_orientation` is warped to at most this many pixels a side (the face is then at most
#: 320 / 2.3 = 140 px, large for the detector). Against 640 on the held-out 300-W, HELEN-29 and InfAnFace faces
#: turned by 0-270 degrees: 9.7 instead of 24.5 ms per 300-W face, 29 instead of 28 of 628 read wrong
#: (docs/predict.md, step 2b)
BOX_LOOK_MAX_SIDE = 320
#: a detection in that patch whose centre is further than this many face-square sides from the square's centre
#: belongs to another face
BOX_LOOK_SHIFT = 0.5


def find_box_orientation(detector: FaceDetector, image: np.ndarray, square: np.ndarray, box_map: dict | None
                         ) -> tuple[np.ndarray, float] | None:
    """Which way up is the face in a given face square ``(cx, cy, side)`` (``--boxes``: no key points)? (face
    square, turn in degrees), or None when the detector finds no face there at any quarter turn.

    The detector looks at the square's patch (``BOX_LOOK_PATCH`` sides each way, black outside the image) turned
    by 0, 90, 180 and 270 degrees; of the detections near the centre (``BOX_LOOK_SHIFT``) and of about the
    square's size, the one scoring highest wins. An upright look scoring ``ORIENT_SKIP_SCORE`` or more ends the
    search. When the upright look wins, nothing changes: the given square and turn 0, as without the looks
    (starting from its eye line instead read the held-out faces no better: docs/predict.md, step 2b). When a
    turned look wins, the turn is its quarter turn plus its eye line and its detection through ``box_map`` (the
    detector's) gives the square, as for detected faces (:func:`find_orientation`): a box drawn around a face
    lying on its side by a detector that looks for upright faces frames it badly (on InfAnFace, YuNet's upright
    boxes of such faces sat 0.3-0.4 sides off).
    """
    cx, cy, side = (float(v) for v in np.asarray(square, dtype=np.float64).reshape(3))
    r = BOX_LOOK_PATCH * side
    size = int(max(32, min(BOX_LOOK_MAX_SIDE, round(2 * r))))
    f = size / (2 * r)  # image -> patch pixels, the square's centre onto the patch's centre
    c = (size - 1) / 2
    patch = warp_crop(image, np.array([[f, 0.0, c - f * cx], [0.0, f, c - f * cy]]), size)
    near, lo, hi = BOX_LOOK_SHIFT * side * f, 0.5 * side * f, 2.5 * side * f
    best: tuple[float, int, Detection] | None = None
    for k in (0, 1, 2, 3):  # np.rot90 by k: the patch turns counter-clockwise by 90k, about its centre
        for d in detector.detect_once(np.ascontiguousarray(np.rot90(patch, k))):
            b = np.asarray(d.box, dtype=np.float64)
            big = max(b[2] - b[0], b[3] - b[1])
            if np.hypot((b[0] + b[2]) / 2 - c, (b[1] + b[3]) / 2 - c) > near or not lo <= big <= hi:
                continue
            if best is None or d.score > best[0]:
                best = (d.score, k, d)
        if k == 0 and best is not None and ORIENT_SKIP_SCORE is not None and best[0] >= ORIENT_SKIP_SCORE:
            break
    if best is None:
        return None
    _, k, d = best
    if not k:  # upright: the given square and an upright start, as without the looks
        return np.array([cx, cy, side]), 0.0
    # the turned look's square, back to the image: undo the quarter turns, then the patch's scale and shift
    sq = boxes_to_squares(np.asarray(d.box, dtype=np.float64)[None], box_map)[0]
    px, py = unrot90(sq[0], sq[1], k, size, size)
    return np.array([cx + (px - c) / f, cy + (py - c) / f, sq[2] / f]), _look_turn(d.keypoints, 90 * k)


#: the whole-image looks of :func:`find_turned_faces`, in rounds (degrees counter-clockwise on screen): the
#: quarter turns first; the diagonal ones only when those find nothing either (YuNet misses many small faces
#: turned by about 45 degrees; docs/benchmarks.md, "Faces the detector misses upright")
TURNED_LOOKS: tuple[tuple[int, ...], ...] = ((90, 180, 270), (45, 135, 225, 315))


#: a diagonal look's canvas holds at most this many times the image's pixels: the image is shrunk first when its
#: turned canvas would be larger. The canvas of a photo is about twice its pixels (2.0-2.7 for aspect ratios up to
#: 3:1; photos up to 5.8:1 are not shrunk), while that of a long thin image grows with the square of its long side
#: (a 1 x 100,000 image: a 70,000-pixel-square canvas, 15 GB)
DIAGONAL_LOOK_MAX_AREA = 4.0


def _diagonal_look(w: int, h: int, degrees: float) -> tuple[tuple[int, int] | None, np.ndarray]:
    """(the size (width, height) the image is shrunk to before the turn, or None when it is not; the 2x3 matrix
    from image pixels to the diagonal look's pixels), the canvas bounded by :data:`DIAGONAL_LOOK_MAX_AREA`."""
    m, (nw, nh) = turn_matrix(w, h, degrees)
    limit = DIAGONAL_LOOK_MAX_AREA * w * h
    if nw * nh <= limit:
        return None, m
    f = math.sqrt(limit / (nw * nh))
    sw, sh = max(1, int(w * f)), max(1, int(h * f))
    fx, fy = sw / w, sh / h  # cv2.resize's pixel-centre mapping: x_small = (x + 0.5) * fx - 0.5
    shrink = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])
    return (sw, sh), compose_affine(turn_matrix(sw, sh, degrees)[0], shrink)


def look_matrix(degrees: int, w: int, h: int) -> np.ndarray:
    """The 2x3 matrix from pixels of a ``(h, w)`` image to pixels of :func:`turned_look` of it."""
    if degrees % 90 == 0:  # np.rot90: exact, pixel centres onto pixel centres
        m = np.array([[1.0, 0, 0], [0, 1.0, 0]])
        cw, ch = w, h
        for _ in range(degrees // 90 % 4):  # one counter-clockwise turn: (x, y) -> (y, cw - 1 - x)
            m = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, cw - 1.0]]) @ np.vstack([m, [0, 0, 1]])
            cw, ch = ch, cw
        return m
    return _diagonal_look(w, h, degrees)[1]


def turned_look(image: np.ndarray, degrees: int) -> np.ndarray:
    """``image`` turned counter-clockwise (on screen) by ``degrees``: ``np.rot90`` for quarter turns, else
    ``facelm.geometry.turn_image`` (canvas grown to hold all of it; a long thin image is shrunk first, so that
    the canvas holds at most :data:`DIAGONAL_LOOK_MAX_AREA` times the image's pixels: :func:`look_matrix`)."""
    if degrees % 90 == 0:
        return np.ascontiguousarray(np.rot90(image, degrees // 90 % 4))
    small, _ = _diagonal_look(image.shape[1], image.shape[0], degrees)
    if small is not None:
        image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    return turn_image(image, degrees)[0]


def find_turned_faces(detector: FaceDetector, image: np.ndarray, iou_threshold: float = 0.3) -> list[Detection]:
    """Faces of an image in which the detector found none upright: the detector looks at the whole image turned
    (:data:`TURNED_LOOKS`: by 90, 180 and 270 degrees; when that finds nothing, by 45, 135, 225 and 315), and what
    it finds is mapped back to the image (best-first, overlapping faces of different turns merged by NMS). YuNet
    misses many faces lying on their side or upside down (infants in a cot, photos stored turned) and many small
    faces at diagonal angles that it finds once they are turned upright.

    Each detection's ``box`` is the axis-aligned box of the turned look's box in image pixels and its ``keypoints``
    are mapped back; ``extra`` keeps ``turn_deg`` (the look's turn), ``look_matrix`` (image -> look pixels),
    ``turned_box`` and ``turned_keypoints``, from which :func:`turned_square` builds the face square and turn as the
    orientation search does for a face found upright, so the search is not run again.
    """
    h, w = image.shape[:2]
    found: list[Detection] = []
    for looks in TURNED_LOOKS:
        for a in looks:
            m = look_matrix(a, w, h)
            back = invert_affine(m)
            for d in detector.detect(turned_look(image, a)):
                b = np.asarray(d.box, dtype=np.float64)
                corners = apply_affine(back, np.array([[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]]))
                kp = None if d.keypoints is None else apply_affine(back, np.asarray(d.keypoints, dtype=np.float64))
                found.append(Detection(box=np.concatenate([corners.min(0), corners.max(0)]), score=d.score,
                                       keypoints=kp, kind=d.kind,
                                       extra={**d.extra, "turn_deg": a, "look_matrix": m, "turned_box": b,
                                              "turned_keypoints": d.keypoints}))
        if found:
            break
    if len(found) < 2:
        return found
    keep = nms(np.stack([d.box for d in found]), np.array([d.score for d in found]), iou_threshold)
    return [found[i] for i in keep]


def turned_square(det: Detection, box_map: dict | None) -> tuple[np.ndarray, float]:
    """(face square, turn in degrees) of a detection made by :func:`find_turned_faces`: ``box_map`` applied to the
    upright box of the turned look, the square's centre mapped back to the image (a turn keeps sizes, a look of a
    shrunk image scales them back); the turn
    as the orientation search gives it (the look's turn plus the detector's eye line within the look)."""
    sq = boxes_to_squares(np.asarray(det.extra["turned_box"], dtype=np.float64)[None], box_map)[0]
    m = np.asarray(det.extra["look_matrix"], dtype=np.float64)
    c = apply_affine(invert_affine(m), sq[None, :2])[0]
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))  # 1 but for a long thin image shrunk before its look
    return np.array([c[0], c[1], sq[2] / scale]), _look_turn(det.extra.get("turned_keypoints"), det.extra["turn_deg"])


def _look_turn(kp, degrees: float) -> float:
    """The turn (degrees) of a face found upright in a look (a patch or the whole image) turned counter-clockwise
    by ``degrees``: in the image it is turned clockwise by that much, i.e. its eye line has the angle ``+degrees``
    (y down); the detector's eye points add the rest (usable within about 30 degrees of upright, and the quarter
    turn leaves at most 45)."""
    rest = 0.0
    if kp is not None and len(kp) >= 2 and np.isfinite(kp[:2]).all():
        rest = float(np.clip(eye_angle(kp[0][None], kp[1][None])[0], -45.0, 45.0))
    return float((degrees + rest + 180) % 360 - 180)


def unrot90(x: float, y: float, k: int, w: int, h: int) -> tuple[float, float]:
    """Pixel ``(x, y)`` of ``np.rot90(a, k)`` back to ``a`` (shape ``(h, w)``), 0-based pixel centres."""
    # one counter-clockwise turn of an array of width cw maps (x, y) -> (y, cw - 1 - x); undo the turns last first
    for j in reversed(range(k % 4)):
        cw = w if j % 2 == 0 else h
        x, y = cw - 1 - y, x
    return x, y
