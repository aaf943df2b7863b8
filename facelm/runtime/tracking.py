"""Faces followed across the frames of a video (``"track"`` ids), and their landmarks smoothed (``--smooth``).

**Tracks.** Within one video, the faces of each frame are matched to the tracks of the frames before by the overlap
(IoU) of their boxes, greedily: the pair with the largest IoU first, then the next among those left, down to
:data:`MIN_IOU`. A face left over starts a new track (ids count from 0 in each video, in order of appearance); a
track not seen for more than :data:`MAX_GAP_S` seconds of video is dropped. A new video (another ``image`` name, or
a frame number that goes back) starts afresh, unless ``FaceTracker.seed`` gave the state an earlier run left it in
(``facelm predict --resume``).

**Smoothing.** With ``smooth=True`` each track's landmarks go through a One-Euro filter (``facelm.smoothing``) per
coordinate, with time ``frame / fps`` (the video's frame rate; :data:`DEFAULT_FPS` when the file does not say) and
speeds measured in face sizes per second (the face square's side), so the settings do not depend on the image
resolution. The face's ``angle`` and ``pose`` are then recomputed from the smoothed landmarks. Still images (no
frame number) pass through unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from facelm.geometry import eye_angle
from facelm.runtime.quality import add_head_poses
from facelm.runtime.results import ImageResult
from facelm.smoothing import DEFAULT_BETA, DEFAULT_D_CUTOFF, DEFAULT_MIN_CUTOFF, OneEuroFilter

__all__ = ["DEFAULT_FPS", "MAX_GAP_S", "MIN_IOU", "FaceTracker", "box_iou"]

#: smallest box IoU that continues a track
MIN_IOU = 0.3
#: a track unseen for longer than this (seconds of video) is dropped
MAX_GAP_S = 1.0
#: frame rate assumed when a video does not give one
DEFAULT_FPS = 30.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``(N, M)`` of boxes ``a`` ``(N, 4)`` and ``b`` ``(M, 4)``, ``[x1, y1, x2, y2]``."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: np.clip(r[:, 2] - r[:, 0], 0, None) * np.clip(r[:, 3] - r[:, 1], 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def greedy_match(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Pairs ``(row, col)`` of ``iou``, largest first, each row and column used once, IoU >= ``min_iou``."""
    pairs = []
    if iou.size == 0:
        return pairs
    order = np.argsort(-iou, axis=None, kind="stable")
    rows, cols = set(), set()
    for k in order:
        i, j = divmod(int(k), iou.shape[1])
        if iou[i, j] < min_iou:
            break
        if i not in rows and j not in cols:
            pairs.append((i, j))
            rows.add(i)
            cols.add(j)
    return pairs


@dataclass
class _Track:
    id: int
    box: np.ndarray
    last_t: float
    filter: OneEuroFilter | None = None


@dataclass
class FaceTracker:
    """Assigns ``FaceResult.track`` on video frames and, with ``smooth``, smooths their landmarks (module
    docstring). Feed it every :class:`ImageResult` in order (``update``); ``scheme`` is the models' scheme (for
    the eye line and the head pose)."""

    scheme: object
    smooth: bool = False
    min_cutoff: float = DEFAULT_MIN_CUTOFF
    beta: float = DEFAULT_BETA
    d_cutoff: float = DEFAULT_D_CUTOFF
    min_iou: float = MIN_IOU
    _video: tuple | None = None
    _tracks: list[_Track] = field(default_factory=list)
    _next: int = 0
    _seeds: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff)  # check the settings now

    def _start(self, name: str, frame: int) -> None:
        self._video, self._tracks, self._next = (name, frame), [], 0

    def seed(self, tails: dict[str, dict]) -> None:
        """Go on where an earlier run stopped (``facelm predict --resume``): ``tails`` maps a video's name to its
        last records in the file and the largest track id it has had (``facelm.shard.read_done``). When this run
        reaches that video at a later frame, its tracks continue with their ids and boxes, and with ``smooth``
        their filters from the last smoothed landmarks (the speed from the last two records), instead of
        starting afresh."""
        self._seeds = dict(tails)

    def _resume(self, name: str, tail: dict, fps: float) -> None:
        recs = tail["records"]
        self._video, self._next = (name, int(recs[-1]["frame"])), int(tail["max_track"]) + 1
        seen: dict[int, list] = {}  # track id -> [(t, face record)], oldest first
        for rec in recs:
            for f in rec.get("faces") or ():
                tid = f.get("track") if isinstance(f, dict) else None
                if isinstance(tid, int) and not isinstance(tid, bool) and f.get("box") is not None:
                    seen.setdefault(tid, []).append((float(rec["frame"]) / fps, f))
        for tid, states in sorted(seen.items()):
            t, f = states[-1]
            tr = _Track(tid, np.asarray(f["box"], float), t)
            tr.filter = self._seeded_filter(states) if self.smooth else None
            self._tracks.append(tr)

    def _seeded_filter(self, states: list) -> OneEuroFilter | None:
        """A filter at the state the records show; None (the filter starts afresh) when they hold no landmarks of
        the models' scheme (a file written with ``--to-scheme``)."""
        pts = []
        for _, f in states:
            try:
                lm = np.array(f.get("landmarks"), dtype=np.float64)
            except (TypeError, ValueError):
                return None
            if lm.shape != (self.scheme.num_landmarks, 2):
                return None
            pts.append(lm)
        flt = OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff)
        (t0, _), (t1, _) = states[0], states[-1]
        speed = (pts[-1] - pts[0]) / (t1 - t0) if len(pts) == 2 and t1 > t0 else None
        flt.restore(pts[-1], t1, speed if speed is not None and np.isfinite(speed).all() else None)
        return flt

    def update(self, result: ImageResult) -> ImageResult:
        """Tracks (and smooths) the faces of one frame in place; returns ``result``."""
        if result.frame is None:
            return result
        fps = result.fps if result.fps and math.isfinite(result.fps) and result.fps > 0 else DEFAULT_FPS
        if self._video is None or self._video[0] != result.name or result.frame <= self._video[1]:
            self._start(result.name, result.frame)
            tail = self._seeds.pop(result.name, None)
            if tail and tail["records"] and int(tail["records"][-1]["frame"]) < result.frame:
                self._resume(result.name, tail, fps)
        self._video = (result.name, result.frame)
        t = result.frame / fps
        self._tracks = [tr for tr in self._tracks if t - tr.last_t <= MAX_GAP_S + 1e-9]
        faces = result.faces
        boxes = np.array([f.box for f in faces], float).reshape(-1, 4)
        iou = box_iou(boxes, np.array([tr.box for tr in self._tracks], float).reshape(-1, 4))
        matched = dict(greedy_match(iou, self.min_iou))
        for i, f in enumerate(faces):
            if i in matched:
                tr = self._tracks[matched[i]]
            else:
                tr = _Track(self._next, boxes[i], t)
                self._next += 1
                self._tracks.append(tr)
            tr.box, tr.last_t, f.track = boxes[i], t, tr.id
            if self.smooth:
                if tr.filter is None:
                    tr.filter = OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff)
                f.landmarks = tr.filter(f.landmarks, t, scale=float(f.square[2]) if f.square is not None else 1.0)
        if self.smooth and faces:
            lm = np.stack([f.landmarks for f in faces])
            angles = eye_angle(*self.scheme.eye_centres(lm))
            for f, a in zip(faces, angles):
                f.angle = float(a)
            add_head_poses(result, self.scheme)
        return result
