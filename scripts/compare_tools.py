"""Compare facelm with the free landmark tools a user could install instead: dlib-68 and MediaPipe Face Mesh.

For a prepared dataset (``facelm prepare`` output) and one split (default ``val``), every tool runs in two box
modes and writes a per-face predictions JSONL into ``--out`` that ``facelm evaluate`` scores (it matches lines to
faces by manifest ``id``)::

    python scripts/compare_tools.py --data /work/main/work/w300 --out work/compare/w300 --evaluate
    python scripts/compare_tools.py --data /work/main/work/mtfl --out work/compare/mtfl --to-5pt --evaluate

Tools and modes (file names in ``--out``):

* ``dlib-own``: dlib's HOG frontal detector (``--upsample`` 1) on the whole image, the detection with the highest
  IoU with the ground-truth face square (IoU >= ``--min-iou``) goes to ``shape_predictor_68_face_landmarks``;
* ``dlib-boxes``: the YuNet detection matched to the face, converted to dlib's box convention by a linear map
  (centre offset and side scales relative to the YuNet box, medians) fitted on TRAIN faces where both detectors
  fire (``dlib-boxmap.json``);
* ``mediapipe-own``: MediaPipe Face Mesh (``static_image_mode``, up to ``--mp-max-faces`` faces) on the whole image
  with its own detector; the face whose landmark square overlaps the ground-truth square most is kept;
* ``mediapipe-boxes``: Face Mesh on a square crop around the same YuNet box (side = (1 + 2 x ``--mp-margin``) x
  the box's longer side, centred on it, zero-padded outside the image), points mapped back to the image;
* ``facelm``: ``facelm predict`` (CLI, default models, YuNet) on the split's images (a list on stdin); each
  ground-truth face takes the predicted face whose landmark square overlaps its square most;
* ``facelm-boxes``: ``facelm predict --boxes FILE`` with the same YuNet boxes, turned into facelm face squares by
  the box map ``facelm predict`` uses for YuNet (``--boxes`` takes face squares, docs/predict.md).

MediaPipe's 468 points become the 68 iBUG/300-W points through the published correspondence of Peizhi Yan,
``mediapipe2dlib`` (https://github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks, ``mediapipe2dlib/mp2dlib.py``, commit
db9e81e2bd432eaee4de90135cc1ad77d19c7db4): one Face Mesh vertex per 68-point, or the mean of two. The Face Mesh
vertices are not the 300-W definitions (the jaw points in particular lie on a different contour), so this
conversion is approximate and adds a systematic error that is not MediaPipe's tracking error.

Faces a tool misses (no detection, no match with IoU >= ``--min-iou``, no landmarks) are left out of the JSONL:
``facelm evaluate`` reports them as ``missing`` and counts them as failures (NME inf, failed at every threshold).
``NAME.summary.json`` holds faces, misses (with ids), seconds and match IoUs. Files that exist are reused unless
``--force``; detector outputs are cached as ``yunet-SPLIT.json`` / ``dlibhog-SPLIT.json``.

Data in another scheme with a map from 300w68 (HELEN-29: ``cofw29``) is scored by ``facelm evaluate`` through that
map (the 68-point files as they are), and faces are matched on the mapped points' square.

``--to-5pt`` also writes ``NAME.5pt.jsonl``: scheme ``5pt`` (image-left eye centre = mean of 68-points 36..41,
image-right eye centre = mean of 42..47, nose tip 30, mouth corners 48 and 54, plus the offsets of facelm's 68 -> 5
scheme map, rewritten from the 68-point file on every run), which ``facelm evaluate`` scores
against 5-point data such as MTFL. ``--evaluate`` runs ``facelm evaluate --protocol custom --per-face`` on the
files and writes ``results.json`` and ``results.md`` (and per MTFL pose label when the manifest has ``attrs.pose``).

Output lines: ``{"id", "image" (absolute path), "scheme": "300w68" | "5pt", "landmarks" [[x, y] * 68] (0-based
image pixels), "box" [x1, y1, x2, y2] (the box the tool ran on, see box_source), "box_source", "iou"}``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TOOLS = ("dlib", "mediapipe", "facelm")
MODES = ("own", "boxes")

# -- 468 -> 68 ---------------------------------------------------------------------------------------------------

#: Face Mesh vertex indices for each 300-W point (0-based, in iBUG order); two indices = their mean.
#: Source: Peizhi Yan, mediapipe2dlib, https://github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks
#: (mediapipe2dlib/mp2dlib.py, ``mp2dlib_correspondence``, commit db9e81e2bd432eaee4de90135cc1ad77d19c7db4).
MP468_TO_68: tuple[tuple[int, ...], ...] = (
    # jaw 0..16 (image left -> image right)
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,), (400,), (379,), (365,),
    (397, 288), (361,), (323,), (454,), (356,),
    # right brow 17..21, left brow 22..26
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    # nose bridge 27..30, nostrils 31..35
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    # right eye 36..41, left eye 42..47
    (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lip 48..59
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),
    # inner lip 60..67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)
MP468_TO_68_SOURCE = ("https://github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks (mediapipe2dlib/mp2dlib.py @ "
                      "db9e81e2bd432eaee4de90135cc1ad77d19c7db4)")


def mp468_to_68(points: np.ndarray) -> np.ndarray:
    """``(468 or 478, D)`` Face Mesh points -> ``(68, D)`` iBUG points (approximate, see the module docstring)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 468:
        raise ValueError(f"expected (468, D) Face Mesh points, got {p.shape}")
    return np.stack([p[list(ix)].mean(axis=0) for ix in MP468_TO_68])


# -- 68 -> 5 -----------------------------------------------------------------------------------------------------

def to_5pt(lm68: np.ndarray) -> np.ndarray:
    """``(68, 2)`` iBUG points -> ``(5, 2)`` MTFL-order points through facelm's ``300w68 -> 5pt`` scheme map, the
    one ``facelm evaluate`` applies to 68-point predictions on 5-point data: image-left eye centre (mean of
    36..41), image-right eye centre (42..47), nose tip (30), image-left mouth corner (48), image-right mouth corner
    (54), each plus the map's offset (facelm/scheme_maps.py), for every tool alike."""
    from facelm.scheme_maps import get_map

    p = np.asarray(lm68, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected (68, 2) points, got {p.shape}")
    return get_map("300w68", "5pt").apply(p)


# -- boxes and matching ------------------------------------------------------------------------------------------

def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``(N, M)`` of boxes ``[x1, y1, x2, y2]``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def square_box(points: np.ndarray, scale: float) -> np.ndarray:
    """``[x1, y1, x2, y2]`` of the face square of ``points``: centred on their bounding box, side = scale x its
    longer side (``facelm.geometry.landmark_square``)."""
    p = np.asarray(points, dtype=np.float64)
    lo, hi = np.nanmin(p, 0), np.nanmax(p, 0)
    c = (lo + hi) / 2
    s = max(float(np.max(hi - lo)) * scale, 1e-6) / 2
    return np.array([c[0] - s, c[1] - s, c[0] + s, c[1] + s])


def match_greedy(gt_boxes: np.ndarray, cand_boxes: np.ndarray, min_iou: float) -> list[tuple[int | None, float]]:
    """One-to-one assignment of candidates to ground-truth boxes, highest IoU first.

    Returns, per ground-truth box, ``(candidate index or None, IoU)``; a pair needs IoU >= ``min_iou``.
    """
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    out: list[tuple[int | None, float]] = [(None, 0.0)] * len(gt_boxes)
    if len(gt_boxes) == 0 or len(cand_boxes) == 0:
        return out
    m = iou_matrix(gt_boxes, cand_boxes)
    used_g, used_c = set(), set()
    for flat in np.argsort(-m, axis=None, kind="stable"):
        g, c = divmod(int(flat), m.shape[1])
        if m[g, c] < min_iou or m[g, c] <= 0:
            break
        if g in used_g or c in used_c:
            continue
        used_g.add(g)
        used_c.add(c)
        out[g] = (c, float(m[g, c]))
    return out


def fit_box_map(src: np.ndarray, dst: np.ndarray) -> dict:
    """Linear box map ``src -> dst`` (boxes ``[x1, y1, x2, y2]``) by medians over matched pairs::

        dst centre = src centre + (dx * w, dy * h);  dst width = sw * w;  dst height = sh * h

    (``w``, ``h``: the source box's width and height). Includes the mean/median IoU of the mapped boxes with the
    targets and, for comparison, of the unmapped source boxes.
    """
    s = np.asarray(src, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(dst, dtype=np.float64).reshape(-1, 4)
    if len(s) == 0 or len(s) != len(d):
        raise ValueError(f"need matched box pairs, got {len(s)} and {len(d)}")
    w, h = s[:, 2] - s[:, 0], s[:, 3] - s[:, 1]
    scx, scy = (s[:, 0] + s[:, 2]) / 2, (s[:, 1] + s[:, 3]) / 2
    dcx, dcy = (d[:, 0] + d[:, 2]) / 2, (d[:, 1] + d[:, 3]) / 2
    m = {"dx": float(np.median((dcx - scx) / w)), "dy": float(np.median((dcy - scy) / h)),
         "sw": float(np.median((d[:, 2] - d[:, 0]) / w)), "sh": float(np.median((d[:, 3] - d[:, 1]) / h)),
         "pairs": len(s),
         "form": "centre = src centre + (dx*w, dy*h); width = sw*w; height = sh*h"}
    mapped_iou = np.diag(iou_matrix(apply_box_map(s, m), d))
    raw_iou = np.diag(iou_matrix(s, d))
    m.update(iou_mean=float(mapped_iou.mean()), iou_median=float(np.median(mapped_iou)),
             iou_identity_mean=float(raw_iou.mean()))
    return m


def apply_box_map(boxes: np.ndarray, m: dict) -> np.ndarray:
    """Apply a :func:`fit_box_map` map to boxes ``(N, 4)``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx = (b[:, 0] + b[:, 2]) / 2 + m["dx"] * w
    cy = (b[:, 1] + b[:, 3]) / 2 + m["dy"] * h
    hw, hh = m["sw"] * w / 2, m["sh"] * h / 2
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], 1)


# -- JSONL -------------------------------------------------------------------------------------------------------

def _num(v: float, nd: int = 3):
    return None if v is None or not math.isfinite(float(v)) else round(float(v), nd)


def face_record(fid: str, image: str | Path, landmarks: np.ndarray, box, box_source: str, scheme: str = "300w68",
                **extra) -> dict:
    """One predictions line (coordinates rounded to 1/1000 px; non-finite values -> null)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    rec = {"id": fid, "image": str(image), "scheme": scheme,
           "landmarks": [[_num(x), _num(y)] for x, y in lm],
           "box": None if box is None else [_num(v, 2) for v in box], "box_source": box_source}
    rec.update(extra)
    return rec


def write_jsonl(path: str | Path, records: list[dict]) -> Path:
    """Write records, one JSON object per line, atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    os.replace(tmp, path)
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def convert_file_to_5pt(src: str | Path, dst: str | Path) -> Path:
    """Rewrite a 68-point predictions JSONL as 5-point (scheme ``5pt``) lines (:func:`to_5pt`)."""
    out = []
    for r in read_jsonl(src):
        lm = np.array([[np.nan if v is None else v for v in p] for p in r["landmarks"]], dtype=np.float64)
        r = dict(r, scheme="5pt", landmarks=[[_num(x), _num(y)] for x, y in to_5pt(lm)])
        out.append(r)
    return write_jsonl(dst, out)


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# -- the dataset -------------------------------------------------------------------------------------------------

class Faces:
    """The split's faces grouped by image, with their ground-truth face squares (the dataset scheme's
    ``face_box_scale``, as facelm crops them)."""

    def __init__(self, data: str | Path, split: str, limit: int = 0):
        from facelm.manifest import load_manifest
        from facelm.schemes import get_scheme

        self.full = load_manifest(data)
        self.m = self.full if split == "all" else self.full.split(split)
        if len(self.m) == 0:
            sys.exit(f"error: no faces in split {split!r} of {data}")
        self.scheme = get_scheme(self.m.scheme)
        self.scale = self.scheme.face_box_scale
        self.by_image: dict[Path, list[int]] = {}
        for i, s in enumerate(self.m.samples):
            if s.dup_of is None:
                self.by_image.setdefault(self.m.image_path(i).resolve(), []).append(i)
        if limit:
            self.by_image = dict(list(self.by_image.items())[:limit])
        self.n_faces = sum(len(v) for v in self.by_image.values())

    def gt_boxes(self, idx: list[int]) -> np.ndarray:
        return np.stack([square_box(self.m.landmarks[i], self.scale) for i in idx])

    def pred_box(self, lm68: np.ndarray) -> np.ndarray:
        """Face square of predicted 68 points in the dataset's scheme (5-point data: of the 5 derived points)."""
        if self.scheme.num_landmarks == 5:
            pts = to_5pt(lm68)
        elif self.scheme.num_landmarks == 68:
            pts = lm68
        else:  # another scheme (HELEN-29): its points that have a 68-point equivalent (facelm.scheme_maps)
            from facelm.scheme_maps import get_map

            pts = get_map("300w68", self.scheme.name).apply(lm68)
        return square_box(pts, self.scale)


def read_rgb(path: Path) -> np.ndarray:
    from facelm.imageio import read_image

    return np.ascontiguousarray(read_image(path, exif=False))


# -- detector caches ---------------------------------------------------------------------------------------------

def yunet_detections(faces: Faces, cache: Path, force: bool, images: list[Path] | None = None) -> dict[str, list]:
    """``{image: [[x1, y1, x2, y2, score], ...]}`` from facelm's YuNetDetector (score threshold 0.6), cached."""
    if cache.exists() and not force:
        return json.loads(cache.read_text())
    from facelm.detectors.yunet import YuNetDetector, find_yunet_model

    model = find_yunet_model()
    if model is None:
        sys.exit("error: no YuNet model (models/detectors/yunet_s_dynamic.onnx is missing; set $FACELM_DETECTOR_MODEL)")
    det = YuNetDetector(model, threads=1)
    out = {}
    t0 = time.perf_counter()
    imgs = images if images is not None else list(faces.by_image)
    for k, p in enumerate(imgs, 1):
        out[str(p)] = [[*map(float, d.box), float(d.score)] for d in det.detect(read_rgb(p))]
        if k % 200 == 0:
            log(f"yunet {k}/{len(imgs)} images, {time.perf_counter() - t0:.0f}s")
    write_json(cache, out)
    return out


def dlib_hog_detections(images: list[Path], cache: Path, force: bool, upsample: int) -> dict[str, list]:
    """``{image: [[l, t, r, b], ...]}`` (inclusive dlib rectangles) from the HOG frontal detector, cached."""
    if cache.exists() and not force:
        return json.loads(cache.read_text())
    import dlib

    det = dlib.get_frontal_face_detector()
    out = {}
    t0 = time.perf_counter()
    for k, p in enumerate(images, 1):
        out[str(p)] = [[r.left(), r.top(), r.right(), r.bottom()] for r in det(read_rgb(p), upsample)]
        if k % 200 == 0:
            log(f"dlib hog {k}/{len(images)} images, {time.perf_counter() - t0:.0f}s")
    write_json(cache, out)
    return out


def rect_edges(r) -> np.ndarray:
    """Pixel-edge box of inclusive dlib corners ``[l, t, r, b]``."""
    return np.array([r[0], r[1], r[2] + 1, r[3] + 1], dtype=np.float64)


def yunet_squares(dets: list, box_map: dict) -> np.ndarray:
    """facelm face squares (as boxes) of YuNet detections, through facelm's box map."""
    from facelm.detectors.boxmap import boxes_to_squares, square_to_box

    if not dets:
        return np.zeros((0, 4))
    return square_to_box(boxes_to_squares(np.array([d[:4] for d in dets]), box_map))


def facelm_yunet_box_map() -> tuple[dict, str]:
    """The box map ``facelm predict`` applies to YuNet boxes with the default models."""
    from facelm.detectors.boxmap import resolve_box_map
    from facelm.runtime import default_models_dir, load_models

    pair = load_models(default_models_dir(), None, ["CPUExecutionProvider"], 1)
    return resolve_box_map(pair.stage1.meta, "yunet")


def log(msg: str) -> None:
    print(f"[compare_tools] {msg}", file=sys.stderr, flush=True)


# -- the tools ---------------------------------------------------------------------------------------------------

class Run:
    """Shared state of one ``compare_tools`` invocation."""

    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.faces = Faces(args.data, args.split, args.limit)
        self._yunet = None
        self._boxmap = None

    @property
    def yunet(self) -> dict[str, list]:
        if self._yunet is None:
            self._yunet = yunet_detections(self.faces, self.out / f"yunet-{self.args.split}.json", self.args.force)
        return self._yunet

    @property
    def facelm_map(self) -> tuple[dict, str]:
        if self._boxmap is None:
            self._boxmap = facelm_yunet_box_map()
        return self._boxmap

    def yunet_matches(self, img: Path, idx: list[int]) -> list[tuple[np.ndarray | None, float]]:
        """Per face of ``img``: the matched YuNet box ``[x1, y1, x2, y2]`` (or None) and the IoU of its facelm
        face square with the ground-truth square."""
        dets = self.yunet.get(str(img), [])
        pairs = match_greedy(self.faces.gt_boxes(idx), yunet_squares(dets, self.facelm_map[0]), self.args.min_iou)
        return [(np.array(dets[c][:4]) if c is not None else None, v) for c, v in pairs]

    def finish(self, name: str, records: list[dict], misses: list[str], t0: float, extra: dict) -> None:
        ious = [r["iou"] for r in records if r.get("iou") is not None]
        write_jsonl(self.out / f"{name}.jsonl", records)
        summ = {"name": name, "data": str(self.faces.full.path), "split": self.args.split,
                "images": len(self.faces.by_image), "faces": self.faces.n_faces, "predicted": len(records),
                "misses": len(misses), "miss_ids": misses, "seconds": round(time.perf_counter() - t0, 1),
                "match_iou_mean": round(float(np.mean(ious)), 4) if ious else None, "min_iou": self.args.min_iou}
        summ.update(extra)
        write_json(self.out / f"{name}.summary.json", summ)
        log(f"{name}: {len(records)}/{self.faces.n_faces} faces, {len(misses)} misses, {summ['seconds']}s")


def dlib_model_path() -> Path:
    """``shape_predictor_68_face_landmarks.dat`` of face_recognition_models, found without importing the package
    (its ``__init__`` needs ``pkg_resources``; see scripts/dlib_baseline.md)."""
    spec = importlib.util.find_spec("face_recognition_models")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "models" / "shape_predictor_68_face_landmarks.dat"
        if p.is_file():
            return p
    sys.exit("error: shape_predictor_68_face_landmarks.dat not found (pip install face-recognition-models)")


def fit_dlib_box_map(run: Run) -> dict:
    """Fit YuNet box -> dlib HOG box on TRAIN faces where both detectors match the face (cached)."""
    path = run.out / "dlib-boxmap.json"
    if path.exists() and not run.args.force:
        return json.loads(path.read_text())
    train = Faces(run.args.data, "train")
    images = list(train.by_image)
    step = max(1, len(images) // run.args.fit_images)
    images = images[::step][: run.args.fit_images]
    hog = dlib_hog_detections(images, run.out / "dlibhog-train-fit.json", run.args.force, run.args.upsample)
    yun = yunet_detections(train, run.out / "yunet-train-fit.json", run.args.force, images)
    src, dst = [], []
    for p in images:
        idx = train.by_image[p]
        gt = train.gt_boxes(idx)
        ydets = yun.get(str(p), [])
        hdets = hog.get(str(p), [])
        ym = match_greedy(gt, yunet_squares(ydets, run.facelm_map[0]), run.args.min_iou)
        hm = match_greedy(gt, np.array([rect_edges(r) for r in hdets]).reshape(-1, 4), run.args.min_iou)
        for (yc, _), (hc, _) in zip(ym, hm, strict=True):
            if yc is not None and hc is not None:
                src.append(ydets[yc][:4])
                dst.append(rect_edges(hdets[hc]))
    if not src:
        sys.exit("error: no train face was matched by both YuNet and dlib's HOG detector; cannot fit the box map")
    m = fit_box_map(np.array(src), np.array(dst))
    m.update(fitted_on=f"{train.full.path} split train", train_images=len(images),
             train_faces=sum(len(train.by_image[p]) for p in images), upsample=run.args.upsample,
             target="dlib HOG rectangle as pixel edges [l, t, r + 1, b + 1]")
    write_json(path, m)
    log(f"dlib box map: {json.dumps({k: m[k] for k in ('dx', 'dy', 'sw', 'sh', 'pairs', 'iou_mean')})}")
    return m


def run_dlib(run: Run, mode: str) -> None:
    import dlib

    predictor = dlib.shape_predictor(str(dlib_model_path()))
    name = f"dlib-{mode}"
    records, misses = [], []
    extra: dict = {"tool": f"dlib {dlib.__version__}", "model": "shape_predictor_68_face_landmarks.dat"}
    bm = fit_dlib_box_map(run) if mode == "boxes" else None  # before t0: the fit is not part of the run's time
    t0 = time.perf_counter()
    if mode == "own":
        hog = dlib_hog_detections(list(run.faces.by_image), run.out / f"dlibhog-{run.args.split}.json",
                                  run.args.force, run.args.upsample)
        extra["upsample"] = run.args.upsample
    else:
        extra["box_map"] = {k: bm[k] for k in ("dx", "dy", "sw", "sh", "pairs", "iou_mean")}
    for img, idx in run.faces.by_image.items():
        rgb = None
        if mode == "own":
            dets = hog.get(str(img), [])
            cands = np.array([rect_edges(r) for r in dets]).reshape(-1, 4)
            found = [(dets[c] if c is not None else None, v)
                     for c, v in match_greedy(run.faces.gt_boxes(idx), cands, run.args.min_iou)]
        else:
            found = []
            for box, v in run.yunet_matches(img, idx):
                if box is None:
                    found.append((None, v))
                    continue
                e = apply_box_map(box[None], bm)[0]
                found.append(([round(e[0]), round(e[1]), round(e[2]) - 1, round(e[3]) - 1], v))
        for i, (r, v) in zip(idx, found, strict=True):
            sid = run.faces.m.samples[i].id
            if r is None:
                misses.append(sid)
                continue
            if rgb is None:
                rgb = read_rgb(img)
            shape = predictor(rgb, dlib.rectangle(*map(int, r)))
            lm = np.array([[shape.part(j).x, shape.part(j).y] for j in range(shape.num_parts)], dtype=np.float64)
            records.append(face_record(sid, img, lm, r, "dlib-hog" if mode == "own" else "yunet->dlib-map",
                                       iou=round(v, 4)))
    run.finish(name, records, misses, t0, extra)


def _mp_faces(mesh, rgb: np.ndarray) -> list[np.ndarray]:
    """Face Mesh on an RGB image -> list of ``(468, 2)`` points in 0-based pixels of that image."""
    h, w = rgb.shape[:2]
    res = mesh.process(rgb)
    out = []
    for fl in res.multi_face_landmarks or []:
        # normalised coordinates (0..1 across the image edges) -> 0-based pixel centres
        out.append(np.array([[p.x * w - 0.5, p.y * h - 0.5] for p in fl.landmark], dtype=np.float64))
    return out


def crop_square(rgb: np.ndarray, box: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Square crop around ``box`` (side = (1 + 2 margin) x its longer side), zero-padded outside the image.

    Returns ``(crop, offset)``: image pixel = crop pixel + offset.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    ox, oy = round(cx - side / 2), round(cy - side / 2)
    s = max(round(side), 1)
    h, w = rgb.shape[:2]
    crop = np.zeros((s, s, 3), dtype=rgb.dtype)
    sx0, sy0, sx1, sy1 = max(ox, 0), max(oy, 0), min(ox + s, w), min(oy + s, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - oy:sy1 - oy, sx0 - ox:sx1 - ox] = rgb[sy0:sy1, sx0:sx1]
    return crop, np.array([ox, oy], dtype=np.float64)


def run_mediapipe(run: Run, mode: str) -> None:
    import mediapipe as mp

    name = f"mediapipe-{mode}"
    t0 = time.perf_counter()
    records, misses = [], []
    a = run.args
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=a.mp_max_faces,
                                           refine_landmarks=False, min_detection_confidence=0.5)
    extra = {"tool": f"mediapipe {mp.__version__} (solutions.face_mesh, static_image_mode, refine_landmarks "
                     f"off, min_detection_confidence 0.5, max_num_faces {a.mp_max_faces})",
             "mapping_468_to_68": MP468_TO_68_SOURCE}
    if mode == "boxes":
        extra["crop"] = f"square, side (1 + 2 x {a.mp_margin}) x longer side of the YuNet box, zero padding"
    for img, idx in run.faces.by_image.items():
        rgb = read_rgb(img)
        gt = run.faces.gt_boxes(idx)
        if mode == "own":
            cands = [mp468_to_68(p) for p in _mp_faces(mesh, rgb)]
            boxes = np.array([run.faces.pred_box(c) for c in cands]).reshape(-1, 4)
            for i, (c, v) in zip(idx, match_greedy(gt, boxes, a.min_iou), strict=True):
                sid = run.faces.m.samples[i].id
                if c is None:
                    misses.append(sid)
                    continue
                records.append(face_record(sid, img, cands[c], boxes[c], "mediapipe-own (landmark square)",
                                           iou=round(v, 4)))
        else:
            for k, (i, (box, _)) in enumerate(zip(idx, run.yunet_matches(img, idx), strict=True)):
                sid = run.faces.m.samples[i].id
                if box is None:
                    misses.append(sid)
                    continue
                crop, off = crop_square(rgb, box, a.mp_margin)
                cands = [mp468_to_68(p) + off for p in _mp_faces(mesh, crop)]
                boxes = np.array([run.faces.pred_box(c) for c in cands]).reshape(-1, 4)
                (c, v), = match_greedy(gt[k:k + 1], boxes, a.min_iou)
                if c is None:
                    misses.append(sid)
                    continue
                records.append(face_record(sid, img, cands[c], box, "yunet-crop", iou=round(v, 4)))
    mesh.close()
    run.finish(name, records, misses, t0, extra)


def facelm_predict(images: list[Path], out: Path, boxes: Path | None, force: bool) -> float:
    """Run ``facelm predict -`` on ``images`` (paths on stdin); returns the seconds (0 when cached)."""
    if out.exists() and not force:
        return 0.0
    exe = Path(sys.executable).with_name("facelm")
    cmd = [str(exe) if exe.exists() else "facelm", "predict", "-", "-o", str(out), "--quiet", "--no-exif",
           "--device", "cpu", "--workers", "1", "--threads", "1", "--streams", "1"]
    if boxes is not None:
        cmd += ["--boxes", str(boxes)]
    log(" ".join(cmd) + f"  < {len(images)} image paths")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, check=False, input="".join(f"{i}\n" for i in images), text=True, capture_output=True)
    if p.returncode not in (0, 1):
        sys.exit(f"error: facelm predict exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return time.perf_counter() - t0


def run_facelm(run: Run, mode: str) -> None:
    from facelm import __version__

    name = "facelm" if mode == "own" else "facelm-boxes"
    t0 = time.perf_counter()
    images = list(run.faces.by_image)
    a = run.args
    extra = {"tool": f"facelm {__version__} (facelm predict, default models)"}
    boxes_file = None
    if mode == "boxes":
        # the matched YuNet box of each face, as the facelm face square predict would derive from it
        from facelm.detectors.boxmap import boxes_to_squares, square_to_box

        bm, src = run.facelm_map
        boxes_file = run.out / f"facelm-boxes-{a.split}.boxes.json"
        payload: dict[str, list] = {}
        for img, idx in run.faces.by_image.items():
            sq = []
            for box, _ in run.yunet_matches(img, idx):
                if box is not None:
                    sq.append([round(float(v), 3) for v in square_to_box(boxes_to_squares(box[None], bm))[0]])
            payload[str(img)] = sq
        write_json(boxes_file, payload)
        extra["boxes"] = f"matched YuNet boxes -> face squares with the {src} box map {bm.get('cx')}, " \
                         f"{bm.get('cy')}, {bm.get('side')}"
    raw = run.out / f"{name}-{a.split}.predict.jsonl"
    secs = facelm_predict(images, raw, boxes_file, a.force)
    records, misses = [], []
    preds = {str(Path(r["image"]).resolve()): r for r in read_jsonl(raw)}
    for img, idx in run.faces.by_image.items():
        r = preds.get(str(img))
        faces = (r or {}).get("faces") or []
        cands = [np.array([[np.nan if v is None else v for v in p] for p in f["landmarks"]], dtype=np.float64)
                 for f in faces]
        boxes = np.array([run.faces.pred_box(c) for c in cands]).reshape(-1, 4)
        for i, (c, v) in zip(idx, match_greedy(run.faces.gt_boxes(idx), boxes, a.min_iou), strict=True):
            sid = run.faces.m.samples[i].id
            if c is None:
                misses.append(sid)
                continue
            records.append(face_record(sid, img, cands[c], faces[c].get("box"),
                                       "yunet (facelm predict)" if mode == "own" else "yunet face square (--boxes)",
                                       iou=round(v, 4)))
    extra["predict_seconds"] = round(secs, 1) if secs else "cached"
    run.finish(name, records, misses, t0, extra)


def run_in_mp_python(a, mode: str) -> None:
    """Run the MediaPipe part under ``--mp-python`` (mediapipe 0.10.21 pins numpy<2 and protobuf<5, which
    break facelm's onnx in the same environment, so it lives in a venv of its own; scripts/compare_tools.md)."""
    py = Path(a.mp_python)
    if not py.exists():
        sys.exit(f"error: mediapipe is not importable here and --mp-python {py} does not exist")
    cmd = [str(py), str(Path(__file__).resolve()), "--data", str(a.data), "--split", a.split, "--out", str(a.out),
           "--tools", "mediapipe", "--modes", mode, "--min-iou", str(a.min_iou), "--mp-margin", str(a.mp_margin),
           "--mp-max-faces", str(a.mp_max_faces), "--limit", str(a.limit)] + (["--force"] if a.force else [])
    log(" ".join(cmd))
    if subprocess.run(cmd, check=False).returncode != 0:
        sys.exit(f"error: the MediaPipe run under {py} failed")


RUNNERS = {"dlib": run_dlib, "mediapipe": run_mediapipe, "facelm": run_facelm}


def file_name(tool: str, mode: str) -> str:
    if tool == "facelm":
        return "facelm" if mode == "own" else "facelm-boxes"
    return f"{tool}-{mode}"


# -- scoring -----------------------------------------------------------------------------------------------------

def evaluate(run: Run, names: list[str]) -> dict:
    """``facelm evaluate --protocol custom --per-face`` on the written files -> ``results.json``/``results.md``."""
    a = run.args
    five = run.faces.scheme.num_landmarks == 5
    files = [run.out / f"{n}{'.5pt' if five else ''}.jsonl" for n in names]
    per_face = run.out / f"per-face-{a.split}.csv"
    # a tool that missed every face wrote an empty file, which evaluate refuses: every face is a failure then
    empty = {str(f.resolve()) for f in files if f.stat().st_size == 0}
    exe = Path(sys.executable).with_name("facelm")
    cmd = [str(exe) if exe.exists() else "facelm", "evaluate", "--data", str(a.data), "--split", a.split,
           "--protocol", "custom", "--per-face", str(per_face), "--quiet",
           *[str(f) for f in files if str(f.resolve()) not in empty]]
    recs: list[dict] = []
    nmes: dict[str, list[tuple[str, float]]] = {}
    if len(empty) < len(files):
        log(" ".join(cmd))
        p = subprocess.run(cmd, check=False, text=True, capture_output=True)
        if p.returncode not in (0, 1):
            sys.exit(f"error: facelm evaluate exited {p.returncode}: {p.stderr.strip()[-2000:]}")
        recs = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        with open(per_face, encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                nmes.setdefault(str(Path(r["model"]).resolve()), []).append((r["id"], float(r["nme"])))
    by_file = {str(Path(r["model"]).resolve()) if "model" in r else None: r for r in recs}
    all_ids = [s.id for s in run.faces.m.samples]
    for f in empty:
        by_file[f] = {"n": len(all_ids), "missing": len(all_ids), "nme": None, "median": None, "fr@0.1": 1.0,
                      "auc@0.1": 0.0}
        nmes[f] = [(i, math.inf) for i in all_ids]
    rows = []
    pose = {s.id: (s.attrs or {}).get("pose") for s in run.faces.m.samples}
    for n, f in zip(names, files, strict=True):
        rec = by_file.get(str(f.resolve())) or next((r for r in recs if Path(r.get("model", "")).name == f.name),
                                                  {})
        summ = json.loads((run.out / f"{n}.summary.json").read_text())
        row = {"name": n, "faces": rec.get("n"), "misses": summ["misses"], "missing_in_eval": rec.get("missing"),
               "nme": rec.get("nme"), "median": rec.get("median"), "fr@0.1": rec.get("fr@0.1"),
               "auc@0.1": rec.get("auc@0.1"), "normaliser": rec.get("normaliser"), "seconds": summ["seconds"]}
        if any(v is not None for v in pose.values()):
            row["by_pose"] = {}
            for lab in sorted({v for v in pose.values() if v is not None}):
                e = np.array([v for i, v in nmes.get(str(f.resolve()), []) if pose.get(i) == lab])
                fin = e[np.isfinite(e)]
                row["by_pose"][str(lab)] = {"n": len(e), "misses": int(np.sum(~np.isfinite(e))),
                                            "nme": float(fin.mean()) if len(fin) else None,
                                            "fr@0.1": float(np.mean(~(e <= 0.1))) if len(e) else None}
        if run.faces.scheme.num_landmarks == 68:
            row["nme_no_jaw"] = nme_subset(run, run.out / f"{n}.jsonl", range(17, 68))
        rows.append(row)
    res = {"data": str(a.data), "split": a.split, "command": cmd, "rows": rows}
    if a.subset_ids:
        keep = {line.strip() for line in Path(a.subset_ids).read_text().splitlines() if line.strip()}
        sub = []
        for n, f in zip(names, files, strict=True):
            e = np.array([v for i, v in nmes.get(str(f.resolve()), []) if i in keep])
            fin = e[np.isfinite(e)]
            sub.append({"name": n, "faces": len(e), "misses": int(np.sum(~np.isfinite(e))),
                        "nme": float(fin.mean()) if len(fin) else None,
                        "median": float(np.median(fin)) if len(fin) else None,
                        "fr@0.1": float(np.mean(~(e <= 0.1))) if len(e) else None})
        res["subset"] = {"name": a.subset_name or Path(a.subset_ids).name, "ids_file": str(a.subset_ids),
                         "rows": sub}
    write_json(run.out / "results.json", res)
    (run.out / "results.md").write_text(results_markdown(res), encoding="utf-8")
    print(results_markdown(res))
    return res


def nme_subset(run: Run, path: Path, points) -> float | None:
    """Mean inter-ocular NME (outer eye corners 36-45 of the ground truth) over ``points`` only, over the predicted
    faces of a 68-point file: without the jaw (17..67) it separates the jaw-contour definitions, which differ most
    between tools (MediaPipe's mapped face oval is not the 300-W jaw), from the inner-face error."""
    ix = list(points)
    gt = {s.id: run.faces.m.landmarks[i] for i, s in enumerate(run.faces.m.samples)}
    errs = []
    for r in read_jsonl(path):
        g = gt.get(r["id"])
        if g is None:
            continue
        lm = np.array([[np.nan if v is None else v for v in q] for q in r["landmarks"]], dtype=np.float64)
        d = np.linalg.norm(g[36] - g[45])
        errs.append(float(np.mean(np.linalg.norm(lm[ix] - g[ix], axis=1)) / d))
    e = np.array(errs)
    return float(e[np.isfinite(e)].mean()) if np.isfinite(e).any() else None


def _pct(v) -> str:
    return "–" if v is None else f"{100 * float(v):.2f}"


def results_markdown(res: dict) -> str:
    rows = res["rows"]
    norm = next((r["normaliser"] for r in rows if r.get("normaliser")), "?")
    lines = [(f"{res['data']} split {res['split']} (normaliser {norm}; NME over the predicted faces, FR@10% over "
             f"all faces with misses as failures; NME 17-67: the same without the jaw, 68-point data only)"), "",
             "| tool / mode | faces | misses | NME % | median % | FR@10% % | AUC@0.1 | NME 17-67 % | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        auc = "–" if r["auc@0.1"] is None else f"{r['auc@0.1']:.3f}"
        lines.append(f"| {r['name']} | {r['faces']} | {r['misses']} | {_pct(r['nme'])} | {_pct(r['median'])} | "
                     f"{_pct(r['fr@0.1'])} | {auc} | {_pct(r.get('nme_no_jaw'))} | {r['seconds']} |")
    if res.get("subset"):
        sb = res["subset"]
        lines += ["", f"Subset {sb['name']} ({sb['ids_file']})", "",
                  "| tool / mode | faces | misses | NME % | median % | FR@10% % |", "|---|---|---|---|---|---|"]
        for r in sb["rows"]:
            lines.append(f"| {r['name']} | {r['faces']} | {r['misses']} | {_pct(r['nme'])} | {_pct(r['median'])} | "
                         f"{_pct(r['fr@0.1'])} |")
    if any("by_pose" in r for r in rows):
        labels = sorted({k for r in rows for k in r.get("by_pose", {})}, key=int)
        n = {k: next(r["by_pose"][k]["n"] for r in rows if k in r.get("by_pose", {})) for k in labels}
        lines += ["", "NME % (misses) / FR@10% % by pose label", "",
                  "| tool / mode | " + " | ".join(f"pose {k} (n={n[k]})" for k in labels) + " |",
                  "|---|" + "---|" * len(labels)]
        for r in rows:
            cells = []
            for k in labels:
                b = r.get("by_pose", {}).get(k)
                cells.append("–" if not b else f"{_pct(b['nme'])} ({b['misses']}) / {_pct(b['fr@0.1'])}")
            lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared dataset folder (facelm prepare output)")
    ap.add_argument("--split", default="val", help="train, val, test or all (default val)")
    ap.add_argument("--out", required=True, help="output folder for the predictions JSONL files")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)} (default all)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma list of own, boxes (default both)")
    ap.add_argument("--force", action="store_true", help="recompute files that exist")
    ap.add_argument("--min-iou", type=float, default=0.3, help="IoU needed to match a face (default 0.3)")
    ap.add_argument("--upsample", type=int, default=1, help="dlib HOG detector upsampling (default 1)")
    ap.add_argument("--fit-images", type=int, default=300,
                    help="train images for the YuNet -> dlib box map fit (evenly spaced; default 300)")
    ap.add_argument("--mp-margin", type=float, default=0.25,
                    help="MediaPipe boxes mode: crop margin per side, x the box's longer side (default 0.25)")
    ap.add_argument("--mp-max-faces", type=int, default=5, help="MediaPipe max_num_faces (default 5)")
    ap.add_argument("--mp-python", default=str(Path(__file__).resolve().parent.parent / ".venv-mp" / "bin" / "python"),
                    help="python with mediapipe, used when mediapipe is not importable here (default .venv-mp)")
    ap.add_argument("--to-5pt", action="store_true", help="also write NAME.5pt.jsonl (5-point predictions)")
    ap.add_argument("--evaluate", action="store_true", help="score with facelm evaluate, write results.json/.md")
    ap.add_argument("--subset-ids", help="--evaluate: also score the faces whose ids this file lists (one a line)")
    ap.add_argument("--subset-name", help="a name for --subset-ids in the tables")
    ap.add_argument("--limit", type=int, default=0,
                    help="only the first N images (smoke tests; --evaluate still scores the whole split, so the "
                         "faces left out count as missing)")
    a = ap.parse_args(argv)
    tools = [t for t in a.tools.split(",") if t]
    modes = [m for m in a.modes.split(",") if m]
    bad = [t for t in tools if t not in TOOLS] + [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"unknown tool or mode: {', '.join(bad)}")
    run = Run(a)
    from facelm.scheme_maps import has_map

    if run.faces.scheme.num_landmarks not in (68, 5) and not has_map("300w68", run.faces.scheme.name):
        sys.exit(f"error: the dataset scheme {run.faces.scheme.name} is neither 300w68 nor 5pt and has no map from "
                 "300w68 (facelm.scheme_maps)")
    five = run.faces.scheme.num_landmarks == 5
    if five and not a.to_5pt:
        log("5-point data: --to-5pt implied (68-point files cannot be scored against it)")
        a.to_5pt = True
    names = []
    for t in tools:
        for mo in modes:
            n = file_name(t, mo)
            if (run.out / f"{n}.jsonl").exists() and (run.out / f"{n}.summary.json").exists() and not a.force:
                log(f"{n}: exists, reused (--force recomputes)")
            elif t == "mediapipe" and importlib.util.find_spec("mediapipe") is None:
                run_in_mp_python(a, mo)
            else:
                RUNNERS[t](run, mo)
            if a.to_5pt:
                convert_file_to_5pt(run.out / f"{n}.jsonl", run.out / f"{n}.5pt.jsonl")
            names.append(n)
    if a.evaluate:
        evaluate(run, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
