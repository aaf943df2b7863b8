"""The two-stage landmark pipeline (docs/predict.md): detector box -> face square -> CNN-6 -> eye-line angle ->
upright face square from the stage-1 shape -> stage 2 (CNN-7, or the shipped ``cnn6r``) -> landmarks back in image
pixels.

Per face, all geometry is in original-image pixels (0-based, pixel centres at integers):

1. **Face square** from the detection: a detector box through the stage-1 model's box map (else the detector's
   own, ``detectors.boxmap``); boxes files hold face squares; ``--no-detect``: the whole image (side max(W, H)/1.2).
1b. **No face upright** (``level=True``, ``turn_search=True`` and a live detector): when the detector finds no
   face in the image, it looks at the image turned by 90, 180 and 270 degrees (then, if still none, by 45, 135,
   225 and 315), and the faces found there are mapped back with the turn that found them
   (``facelm.runtime.orientation.find_turned_faces``); their face square is the box map applied in the turned
   image, so step 2b's search is not needed for them.
2. **Stage 1**: frame ``(cx, cy, side, 0)`` -> ``frame_matrices`` (64 px, the crop covers 1.2 x side) ->
   anti-aliased ``warp_crop`` (black outside the image, as the training crops) -> CNN-6 -> landmarks mapped back
   through the inverse affine.
2b. **Which way up, and levelling** (``level=True``, the default): with a live detector, unless its detection is
   confident enough to be upright, the detector runs again on the face's patch turned by 90, 180 and 270 degrees
   and the best-scoring turn (plus the detector's eye line within it) sets the angle of the first stage-1 crop
   (``facelm.runtime.orientation``); a given box (``box_looks``) gets the same search on its patch, turned by 0,
   90, 180 and 270 degrees, and a turned look's box replaces it; then stage 1 runs again, twice, on the crop
   levelled by its own previous shape. Faces whose last levelled shape still disagrees with the one before
   (without a detector's look: faces the first pass misread) are tried from quarter turns and keep the most
   self-consistent result (docs/predict.md). With ``rescue``, a face whose levelled reading still has a quality
   below ``RESCUE_QUALITY`` starts again from its face square scaled and turned (``facelm.runtime.rescue``).
3. **Angle and box correction**: ``upright_frames`` of the stage-1 shape, exactly as CNN-7's training crops were
   made: the angle of the eye line (the scheme's angle normaliser; 0 = level, positive = the image-right eye is
   lower, i.e. the face is rolled clockwise on screen, since y points down) and the bounding square of the shape
   rotated level (side ``face_box_scale x max(w, h)``).
4. **Stage 2**: frame ``(cx, cy, side, angle)`` -> upright crop at the stage-2 model's size (CNN-7 128 px,
   ``cnn6r`` 64 px) -> the model -> inverse affine. With ``tta="full"`` stage 2 also runs on six nearby framings
   of that square (``STAGE2_FRAMINGS``) and the seven results are averaged.

5. **Label shift**: the reported landmarks (final and ``stage1``) move along the face's eye line by the model's
   ``label_shift`` (a fraction of the eye-centre distance, from its metadata; 0 when it has none): flip-trained
   networks read faces mirror-symmetrically, while hand annotations sit slightly to one side
   (``facelm.modelfile.label_shift``). Only what is reported moves; crops are framed by the unshifted shapes.
6. **Second readings** (a live detector only): a face whose landmarks lie mostly inside a better face's
   (``facelm.runtime.results.drop_duplicate_readings``) is dropped: a weaker detection beside a face can have its
   points pulled onto that face.

The reported ``angle`` (degrees, same sign convention) is the eye-line angle of the *final* landmarks: with two
stages that is a refinement of the step-3 angle (the rotation removed before stage 2, kept as
``FaceResult.crop_angle``), which comes from the coarser stage-1 shape; with ``--stages 1`` the two are the same.

Throughput: faces are batched across images (``batch``). A producer thread walks the sources and submits reading,
detection and stage-1 cropping of each image to a thread pool; the main thread takes the results in input order,
runs the networks on batches and stage-2 crops in between, so the networks are not starved (onnxruntime,
OpenCV decoding and warping release the GIL). Each face keeps only a local *patch* of its image (3 x the face
side, shrunk when the face is much larger than the 128-px crop needs), so pending batches of huge photos stay small.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from facelm.crops import CROP_EXPAND, frame_matrices, reframe, upright_frames
from facelm.detectors.base import Detection, FaceDetector
from facelm.detectors.boxes import BoxLookupError
from facelm.detectors.boxmap import resolve_box_map
from facelm.errors import DataError, ModelError
from facelm.geometry import apply_affines, compose_affine, eye_angle, invert_affine, invert_affines, warp_crop
from facelm.imageio import ImageReadError, read_image
from facelm.modelfile import label_shift as model_label_shift
from facelm.modelfile import shift_landmarks
from facelm.runtime.feeder import Feeder
from facelm.runtime.orientation import find_box_orientation, find_orientation, find_turned_faces, turned_square
from facelm.runtime.patches import PATCH_RADIUS, face_patch, face_squares
from facelm.runtime.quality import add_head_poses, quality_score, quality_signals
from facelm.runtime.rescue import RESCUE_QUALITY, off_square, pick_rescued, qualities, rescue_frames
from facelm.runtime.results import (
    FaceResult,
    ImageResult,
    annotate,
    drop_duplicate_readings,
)
from facelm.runtime.session import ModelPair, ModelSession, cpu_count
from facelm.sources import SourceItem

__all__ = ["PATCH_RADIUS", "STAGE2_FRAMINGS", "TTA_MODES", "FaceResult", "ImageResult", "Landmarker", "annotate",
           "face_squares"]

#: levelling: a levelled stage-1 shape further than this (mean point distance / inter-ocular distance) from the first
#: shape sends the face through the orientation search (step 2b)
SEARCH_DISAGREEMENT = 0.1
#: levelled stage-1 passes (each re-levels by the previous shape)
LEVEL_PASSES = 2
#: test-time augmentation: none; flip (every network call averaged with its mirror image); full (flip, and stage 2
#: averaged over ``STAGE2_FRAMINGS``)
TTA_MODES = ("none", "flip", "full")
#: stage-2 framings averaged by ``tta="full"``: (scale, dx, dy) of the stage-2 square (``facelm.crops.reframe``):
#: the square itself, 10% smaller and larger, and moved by 3% of its side left, right, up and down: within the
#: box jitter stage 2 is trained with (each corner moves by up to 5% of the side: ``facelm.augment``)
STAGE2_FRAMINGS = ((1.0, 0.0, 0.0), (0.9, 0.0, 0.0), (1.1, 0.0, 0.0), (1.0, 0.03, 0.0), (1.0, -0.03, 0.0),
                   (1.0, 0.0, 0.03), (1.0, 0.0, -0.03))
@dataclass
class _Face:
    det: Detection
    square: np.ndarray  # (3,) cx, cy, side
    patch: np.ndarray  # (h, w, 3) uint8
    to_patch: np.ndarray  # (2, 3) image -> patch pixels
    m1: np.ndarray  # (2, 3) image -> stage-1 crop
    crop1: np.ndarray  # (S1, S1, 3)


@dataclass
class _Job:
    result: ImageResult
    faces: list[_Face] = field(default_factory=list)


def _back(mats: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map crop-pixel points ``(N, L, 2)`` back through the inverses of ``mats`` ``(N, 2, 3)``."""
    return apply_affines(invert_affines(mats), pts)


class Landmarker:
    """Detector + stage 1 (+ stage 2), batched over faces of many images.

    Args:
        models: the loaded model pair (``load_models``); ``models.stage2`` None means stage 1 only.
        detector: a :class:`FaceDetector`.
        batch: faces per network call.
        workers: reader/detector threads (0 = number of cores).
        keep_images: keep each decoded image on its result (for ``--draw``).
        box_map: override the box map stored in the stage-1 model.
        exif: apply EXIF orientation when reading files (user photos: True).
        level: which way up and levelling (module docstring, step 2b); False: every face is taken as upright.
        tta: test-time averaging, one of ``TTA_MODES``.
        turn_search: with ``level`` and a live detector, an image in which no face is found upright is searched
            turned by 90, 180 and 270 degrees, then 45, 135, 225 and 315 (step 1b).
        rescue: with ``level``, faces whose levelled reading has a low quality are read again from other
            starting crops (step 2b).
        label_shift: add the models' label shift to the reported landmarks (step 5); False: the networks'
            mirror-symmetric reading.
        box_looks: with ``level``, a live detector that looks inside each given box (boxes files,
            ``predict_boxes``) for which way up its face is (step 2b); None: given faces start upright.
    """

    def __init__(self, models: ModelPair, detector: FaceDetector, *, batch: int = 32, workers: int = 0,
                 keep_images: bool = False, box_map: dict | None = None, exif: bool = True, streams: int = 1,
                 level: bool = True, tta: str = "none", turn_search: bool = True, label_shift: bool = True,
                 rescue: bool = True, box_looks: FaceDetector | None = None):
        if batch < 1 or streams < 1:
            raise ValueError("batch and streams must be at least 1")
        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, not {tta!r}")
        self.streams = streams
        self.level = level
        self.turn_search = turn_search
        self.rescue = rescue
        self.box_looks = box_looks
        self.tta = tta
        self.s1: ModelSession = models.stage1
        self.s2: ModelSession | None = models.stage2
        self.scheme = models.scheme
        self.detector = detector
        self.batch = batch
        self.workers = workers or cpu_count()
        self.keep_images = keep_images
        self.exif = exif
        expand = float(self.s1.meta.get("crop", {}).get("crop_expand", CROP_EXPAND))
        if abs(expand - CROP_EXPAND) > 1e-9:
            raise ModelError(f"{self.s1.path}: crop expansion {expand} is not facelm's {CROP_EXPAND}")
        if box_map is not None:
            self.box_map, self.box_map_source = box_map, "given"
        else:
            self.box_map, self.box_map_source = resolve_box_map(self.s1.meta, detector.name)
        self.looks_map = self.box_map  # the box map of the box looks' detector
        if box_looks is not None and box_looks is not detector:
            self.looks_map = resolve_box_map(self.s1.meta, box_looks.name)[0]
        self.stats = {"images": 0, "faces": 0, "errors": 0, "batches": 0, "infer_s": 0.0, "reread": 0}
        self._lock = threading.Lock()
        # each stage's label shift (step 5): added to the landmarks that stage reports, never to the shapes that
        # frame the next crop
        self.shift1 = model_label_shift(self.s1.meta, str(self.s1.path)) if label_shift else 0.0
        self.shift2 = 0.0
        if label_shift and self.s2 is not None:
            self.shift2 = model_label_shift(self.s2.meta, str(self.s2.path))

    # -- per image (worker threads) -----------------------------------------------------------------------------
    def _faces(self, image: np.ndarray, dets: list[Detection]) -> list[_Face]:
        if not dets:
            return []
        squares = face_squares(dets, self.box_map)
        turns = np.zeros(len(dets))
        for i, d in enumerate(dets if self.level else ()):  # which way up is each face? (step 2b)
            if self.detector.live and "turn_deg" in d.extra:  # found only in the turned image: its turn is known
                squares[i], turns[i] = turned_square(d, self.box_map)
            elif self.detector.live and d.kind == "detector":
                squares[i], turns[i] = self._orientation(image, d, squares[i])
            elif self.box_looks is not None and d.kind != "crop":  # a given box: the detector looks inside it
                found = find_box_orientation(self.box_looks, image, squares[i], self.looks_map)
                if found is not None:
                    squares[i], turns[i] = found
        s1, s2 = self.s1.size, (self.s2.size if self.s2 is not None else self.s1.size)
        frames = np.column_stack([squares, turns])
        mats, _ = frame_matrices(frames, s1)
        out = []
        for d, sq, m in zip(dets, squares, mats):
            patch, t = face_patch(image, sq, s2)
            crop = warp_crop(patch, compose_affine(m, invert_affine(t)), s1)
            out.append(_Face(d, sq, patch, t, m, crop))
        return out

    def _orientation(self, image: np.ndarray, det: Detection, square: np.ndarray) -> tuple[np.ndarray, float]:
        """(face square, turn in degrees) of a detected face (``facelm.runtime.orientation``)."""
        return find_orientation(self.detector, image, det, square, self.box_map)

    def prepare(self, item: SourceItem) -> _Job:
        """Read, detect and cut stage-1 crops for one item; never raises (errors go into the result)."""
        res = ImageResult(item.name, item.frame, None, None, fps=item.fps)
        if item.error:
            res.error, res.source_error = item.error, not item.found
            return _Job(res)
        try:
            image = item.image if item.image is not None else read_image(item.path, exif=self.exif)
            res.height, res.width = image.shape[:2]
            dets = self.detector.detect(image, item.name, item.frame)
            if not dets and self.turn_search and self.level and self.detector.live:  # step 1b: turned faces
                dets = find_turned_faces(self.detector, image)
            job = _Job(res, self._faces(image, dets))
            if self.keep_images:
                res.image = image
            return job
        except ImageReadError as e:
            res.error = str(e)
        except BoxLookupError as e:
            res.error = str(e)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the run
            res.error = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        return _Job(res)

    # -- per batch (main thread) --------------------------------------------------------------------------------
    def _run(self, session: ModelSession, crops: np.ndarray, spread: list | None = None, flip: bool = True
             ) -> np.ndarray:
        """Landmarks (crop pixels) of ``crops``; with ``spread`` (a list) the mirror pass runs even without flip
        TTA, and the mean distance between the two passes' points, in crop sides, is appended to it (quality).
        ``flip=False``: no flip averaging whatever the TTA mode (the rescue's trial readings)."""
        t0 = time.perf_counter()
        outs = [session.run(crops[i:i + self.batch]) for i in range(0, len(crops), self.batch)]
        pred = np.concatenate(outs)
        average = flip and self.tta != "none"
        mirror = average or spread is not None
        if mirror:  # the crop's mirror image's landmarks, mirrored back
            size = crops.shape[2]
            mirrored = np.ascontiguousarray(crops[:, :, ::-1])
            flipped = np.concatenate([session.run(mirrored[i:i + self.batch])
                                      for i in range(0, len(crops), self.batch)])
            back = flipped[:, list(self.scheme.flip_perm)].copy()
            back[..., 0] = (size - 1) - back[..., 0]
            if spread is not None:
                spread.append(np.linalg.norm(pred - back, axis=-1).mean(1) / size)
            if average:  # the mean of the two
                pred = (pred + back) / 2
        with self._lock:
            self.stats["infer_s"] += time.perf_counter() - t0
            self.stats["batches"] += len(outs) * (2 if mirror else 1)
        return pred

    def _stage1_at(self, faces: list[_Face], frames: np.ndarray, spread: list | None = None, flip: bool = True
                   ) -> np.ndarray:
        """Stage-1 landmarks (image pixels) of the crops of ``frames`` (N, 4); ``spread``, ``flip``: ``_run``'s."""
        crops, mats = self._crops(faces, frames, self.s1.size)
        return _back(mats, self._run(self.s1, crops, spread, flip))

    def _level_once(self, faces: list[_Face], shapes: np.ndarray, spread: bool = False, flip: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Stage 1 on the crops levelled by ``shapes``; returns (new shapes, their disagreement with ``shapes`` in
        inter-ocular units of the new shapes, and with ``spread`` their mirror spread (``_run``))."""
        le, re = self.scheme.eye_centres(shapes)
        sp: list | None = [] if spread else None
        new = self._stage1_at(faces, upright_frames(shapes, le, re, self.scheme.face_box_scale), sp, flip)
        a, b = self.scheme.eye_centres(new)
        io = np.maximum(np.linalg.norm(a - b, axis=1), 1e-6)
        return new, np.linalg.norm(new - shapes, axis=-1).mean(1) / io, (sp[0] if sp else None)

    def _levelled(self, faces: list[_Face], first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step 2b (module docstring): level by the first shape and run stage 1 again. A face whose levelled
        shape disagrees with the first one by more than ``SEARCH_DISAGREEMENT`` (a first pass that misread the
        face's orientation) is tried from the detector square turned by 90, 180 and 270 degrees as well, and keeps
        the most self-consistent result. Returns (shapes, their last-pass disagreement, their mirror spread)."""
        best, err, spread = self._level_once(faces, first, spread=LEVEL_PASSES == 1)
        for k in range(LEVEL_PASSES - 1):
            best, err, spread = self._level_once(faces, best, spread=k == LEVEL_PASSES - 2)
        bad = np.flatnonzero(~(err <= SEARCH_DISAGREEMENT))
        if bad.size:
            sub = [faces[i] for i in bad]
            for turn in (90.0, 180.0, 270.0):
                frames = np.column_stack([np.stack([f.square for f in sub]), np.full(len(sub), turn)])
                cand, e, sp = self._level_once(sub, self._stage1_at(sub, frames), spread=True)
                better = e < err[bad]
                best[bad[better]], err[bad[better]], spread[bad[better]] = cand[better], e[better], sp[better]
        if self.rescue:  # step 2b, second reading of doubtful faces
            self._rescued(faces, best, err, spread)
        return best, err, spread

    def _rescued(self, faces: list[_Face], best: np.ndarray, err: np.ndarray, spread: np.ndarray) -> None:
        """Step 2b's second reading (``facelm.runtime.rescue``): each face of low quality is read from every
        ``rescue_frames`` start (all in one batch; one stage-1 pass and one levelled pass each, without flip
        averaging; trials off the face's square do not count); where the best trial's quality beats the first
        reading's by the margin, it is levelled once more as usual and replaces ``best``, ``err`` and ``spread`` in
        place if its quality is still higher."""
        q = qualities(spread, err)
        low = np.flatnonzero(q < RESCUE_QUALITY)
        if not low.size:
            return
        with self._lock:
            self.stats["reread"] += int(low.size)
        sub = [faces[i] for i in low]
        squares = np.stack([f.square for f in sub])
        frames = rescue_frames(squares, eye_angle(*self.scheme.eye_centres(best[low])))
        n, h = len(sub), len(frames) // len(sub)
        many = sub * h
        trial, e, sp = self._level_once(many, self._stage1_at(many, frames, flip=False), spread=True, flip=False)
        tq = np.where(off_square(trial, np.tile(squares, (h, 1))), np.nan, qualities(sp, e))
        pick = pick_rescued(q[low], tq.reshape(-1, n))
        won = np.flatnonzero(pick >= 0)
        if not won.size:
            return
        shapes, e, sp = self._level_once([sub[j] for j in won], trial[pick[won] * n + won], spread=True)
        keep = qualities(sp, e) > q[low[won]]  # (the last pass confirms the trial's better reading)
        i = low[won[keep]]
        best[i], err[i], spread[i] = shapes[keep], e[keep], sp[keep]

    def _crops(self, faces: list[_Face], frames: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Crops ``(N, size, size, 3)`` of ``frames`` cut from each face's patch, and their matrices."""
        mats, _ = frame_matrices(frames, size)
        crops = np.empty((len(faces), size, size, 3), np.uint8)
        for i, f in enumerate(faces):
            crops[i] = warp_crop(f.patch, compose_affine(mats[i], invert_affine(f.to_patch)), size)
        return crops, mats

    def _infer(self, faces: list[_Face]) -> list[FaceResult]:
        crops1 = np.stack([f.crop1 for f in faces])
        m1 = np.stack([f.m1 for f in faces])
        sp: list = []
        lm1 = _back(m1, self._run(self.s1, crops1, None if self.level else sp))
        if self.level:  # step 2b: stage 1 again on the crop levelled by the first shape's eye line
            lm1, err, spread = self._levelled(faces, lm1)
        else:
            err, spread = np.full(len(faces), np.nan), sp[0]
        le, re = self.scheme.eye_centres(lm1)
        frames2 = upright_frames(lm1, le, re, self.scheme.face_box_scale)
        final, angles = lm1, eye_angle(le, re)
        if self.s2 is not None:
            framings = STAGE2_FRAMINGS if self.tta == "full" else STAGE2_FRAMINGS[:1]
            frames = np.concatenate([reframe(frames2, *f) for f in framings])
            crops2, m2 = self._crops(faces * len(framings), frames, self.s2.size)
            final = _back(m2, self._run(self.s2, crops2)).reshape(len(framings), len(faces), -1, 2).mean(0)
            angles = eye_angle(*self.scheme.eye_centres(final))
        signals = quality_signals(spread, err)
        shown1 = shift_landmarks(lm1, self.shift1, self.scheme)
        final = shown1 if self.s2 is None else shift_landmarks(final, self.shift2, self.scheme)
        return [FaceResult(box=f.det.box, score=f.det.score, angle=float(angles[i]), landmarks=final[i],
                           stage1=shown1[i], square=f.square, crop_angle=float(frames2[i, 3]),
                           quality=quality_score(signals[i]), signals=signals[i])
                for i, f in enumerate(faces)]

    def _finish(self, jobs: list[_Job]) -> list[ImageResult]:
        faces = [f for j in jobs for f in j.faces]
        if faces:
            try:
                results = self._infer(faces)
            except Exception as e:  # noqa: BLE001 - an inference failure fails these images, not the run
                msg = f"inference failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
                for j in jobs:
                    if j.faces:
                        j.result.error, j.faces = msg, []
                results = []
            k = 0
            for j in jobs:
                n = len(j.faces)
                j.result.faces = results[k:k + n]
                if self.detector.live:  # step 6: second readings of a face (given boxes each keep their face)
                    j.result.faces = drop_duplicate_readings(j.result.faces)
                k += n
                add_head_poses(j.result, self.scheme)
        with self._lock:
            for j in jobs:
                self.stats["images"] += 1
                self.stats["faces"] += len(j.result.faces)
                self.stats["errors"] += j.result.error is not None
        return [j.result for j in jobs]

    # -- streaming ---------------------------------------------------------------------------------------------
    def run(self, items: Iterable[SourceItem], lookahead: int = 0) -> Iterator[ImageResult]:
        """Results for ``items`` in input order, batched and pipelined (see the module docstring).

        An exception raised while walking the sources ends the stream after the results so far, then is raised.
        """
        lookahead = lookahead or max(2 * self.batch, 4 * self.workers)
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="facelm-read")
        feed = Feeder(items, self.prepare, pool, lookahead)
        feed.thread.start()
        infer = ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="facelm-infer") \
            if self.streams > 1 else None
        inflight: deque = deque()

        def dispatch(batch_jobs: list[_Job]) -> Iterator[ImageResult]:
            """Run a batch now (one stream) or on the inference pool, keeping at most ``streams`` in flight."""
            if infer is None:
                yield from self._finish(batch_jobs)
                return
            inflight.append(infer.submit(self._finish, batch_jobs))
            while len(inflight) > self.streams:
                yield from inflight.popleft().result()

        def drain() -> Iterator[ImageResult]:
            while inflight:
                yield from inflight.popleft().result()

        pending: list[_Job] = []
        n_faces = 0
        try:
            while True:
                try:
                    fut = feed.futures.get(timeout=0.5)
                except queue.Empty:  # the sources are slow (e.g. paths typed on stdin): do not hold results back
                    if pending:
                        yield from dispatch(pending)
                        pending, n_faces = [], 0
                    yield from drain()
                    continue
                if fut is Feeder.DONE:
                    break
                job = fut.result() if isinstance(fut, Future) else fut
                pending.append(job)
                n_faces += len(job.faces)
                if n_faces >= self.batch or len(pending) >= 4 * self.batch:
                    yield from dispatch(pending)
                    pending, n_faces = [], 0
            if pending:
                yield from dispatch(pending)
            yield from drain()
        finally:
            feed.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            if infer is not None:
                infer.shutdown(wait=False, cancel_futures=True)
        if feed.failure:
            e = feed.failure[0]
            if isinstance(e, (DataError, ModelError)):
                raise e
            raise DataError(f"reading the inputs failed: {type(e).__name__}: {e}") from e

    def predict_image(self, image: np.ndarray, name: str = "<array>") -> ImageResult:
        """One in-memory RGB image, synchronously."""
        from pathlib import Path

        job = self.prepare(SourceItem(name, Path(name), image=image))
        return self._finish([job])[0]

    def predict_boxes(self, image: np.ndarray, boxes: np.ndarray, kind: str = "face-square") -> list[FaceResult]:
        """Faces of one RGB image from given boxes ``(N, 4)`` (``kind`` as in :class:`Detection`)."""
        dets = [Detection(box=np.asarray(b, dtype=np.float64), kind=kind) for b in np.asarray(boxes).reshape(-1, 4)]
        faces = self._faces(image, dets)
        res = ImageResult("", None, image.shape[1], image.shape[0], self._infer(faces) if faces else [])
        return add_head_poses(res, self.scheme) or res.faces  # poses as for detected faces
