"""Prediction files: reading the landmarks another run or tool wrote, and matching them to a dataset's faces.

Whatever ``facelm predict`` writes (JSONL, a JSON array, or its CSV), or any tool's predictions in the same
format (:func:`read_predictions`); :func:`match_predictions` assigns them to the faces of a prepared dataset.
``facelm evaluate`` scores such a file like a model.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facelm.errors import ModelError
from facelm.geometry import point_boxes
from facelm.manifest import Manifest

__all__ = ["Predictions", "match_predictions", "read_predictions"]

Warn = Callable[[str], None]


def _noop(msg: str) -> None:
    pass


@dataclass
class _PredFace:
    landmarks: np.ndarray  # (L, 2)
    line: int
    id: str | None = None


@dataclass
class Predictions:
    """A parsed predictions file (see :func:`read_predictions`)."""

    path: Path
    by_image: dict[str, list[_PredFace]] = field(default_factory=dict)
    by_id: dict[str, _PredFace] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    records: int = 0
    num_landmarks: int | None = None
    scheme: str | None = None
    seen_images: set = field(default_factory=set)  # (image, frame) of the per-image records
    repeated: list[str] = field(default_factory=list)  # images of per-image records that repeat an earlier one


def _parse_landmarks(v, where: str) -> np.ndarray:
    if isinstance(v, dict) and isinstance(v.get("x"), list) and isinstance(v.get("y"), list):  # parallel arrays
        v = list(zip(v["x"], v["y"]))
    if not isinstance(v, list) or any(not isinstance(p, (list, tuple)) or len(p) != 2 for p in v):
        raise ModelError(f"{where}: 'landmarks' must be a list of [x, y] pairs")
    # JSON numbers or null only: float() would also take true/false and numeric strings ("1")
    number = lambda c: c is None or (isinstance(c, (int, float)) and not isinstance(c, bool))
    bad = next((c for p in v for c in p if not number(c)), None)
    if bad is not None:
        raise ModelError(f"{where}: 'landmarks' holds a value that is not a number ({json.dumps(bad)[:40]})")
    try:
        return np.array([[np.nan if c is None else float(c) for c in p] for p in v], dtype=np.float64
                        ).reshape(-1, 2)
    except OverflowError:  # an integer beyond any float
        raise ModelError(f"{where}: 'landmarks' holds a number out of range") from None


def _read_record(line: str, n: int, out: Predictions) -> None:
    """Parse one predictions line into ``out`` (see :func:`read_predictions`)."""
    where = f"{out.path}:{n}"
    try:
        rec = json.loads(line)
    except ValueError as e:
        raise ModelError(f"{where}: not a JSON line ({e.msg})") from None
    _read_object(rec, n, out)


def _read_object(rec, n: int, out: Predictions, where: str | None = None) -> None:
    """One prediction record (a JSONL line, an element of a JSON array, or a CSV image's rows) into ``out``."""
    where = where or f"{out.path}:{n}"
    if not isinstance(rec, dict):
        raise ModelError(f"{where}: expected a JSON object per line")
    out.records += 1
    image = rec.get("image")
    image = str(image) if image is not None else None
    if rec.get("error"):
        if image is not None:
            out.errors[image] = str(rec["error"])
        if not rec.get("faces") and "landmarks" not in rec:
            return
    if "faces" in rec:
        faces = rec["faces"] or []
        if not isinstance(faces, list):
            raise ModelError(f"{where}: 'faces' must be a list")
        if image is not None:  # one record per image (per video frame): a second one is two runs in one file
            key = (image, rec.get("frame"))
            if key in out.seen_images:
                out.repeated.append(image)
            out.seen_images.add(key)
    elif "landmarks" in rec:
        faces = [rec]
    else:
        raise ModelError(f"{where}: a prediction line needs 'faces' or 'landmarks'")
    for f in faces:
        if not isinstance(f, dict) or "landmarks" not in f:
            raise ModelError(f"{where}: every face needs 'landmarks'")
        lm = _parse_landmarks(f["landmarks"], where)
        if out.num_landmarks is None:
            out.num_landmarks = len(lm)
        elif len(lm) != out.num_landmarks:
            raise ModelError(f"{where}: {len(lm)} landmarks, but earlier lines have {out.num_landmarks}")
        sch = f.get("scheme", rec.get("scheme"))
        if sch is not None:
            if out.scheme is not None and sch != out.scheme:
                raise ModelError(f"{where}: scheme {sch!r}, but earlier lines have {out.scheme!r}")
            out.scheme = str(sch)
        fid = f.get("id")  # a per-face line's own id, or the id of a face inside "faces"
        face = _PredFace(lm, n, str(fid) if fid is not None else None)
        if image is None and face.id is None:
            raise ModelError(f"{where}: a prediction line needs 'image' (or a manifest 'id')")
        if face.id is not None:
            if face.id in out.by_id:
                raise ModelError(f"{where}: a second prediction for id {face.id!r} "
                                 f"(first on line {out.by_id[face.id].line})")
            out.by_id[face.id] = face
        if image is not None:
            out.by_image.setdefault(image, []).append(face)


def read_predictions(path: str | Path) -> Predictions:
    """Read a predictions file, whichever format ``facelm predict`` wrote: JSONL (one JSON object per line; blank
    lines ignored), one JSON array of those objects (``--format json``), or its CSV (``--format csv``).

    Accepted lines (coordinates are 0-based original-image pixels; ``null`` coordinates are failed points):

    * per image (what ``facelm predict`` writes): ``{"image": PATH, "width": W, "height": H, "faces": [{"box":
      [...], "score": s, "angle": a, "landmarks": [[x, y], ...]}, ...], "error": null}``; a non-null
      ``"error"`` marks an image the predictor could not read (its faces are then missing);
    * per face: ``{"image": PATH, "landmarks": [[x, y], ...]}`` (other keys such as ``face``, ``box``,
      ``scheme`` allowed), or with ``"id"`` matching a manifest sample id, which matches that face directly;
    * ``landmarks`` may also be ``{"x": [...], "y": [...]}``; a ``"scheme"`` key, when present, is checked.

    Raises:
        ModelError: unreadable file, invalid JSON, a line without landmarks, landmark counts or schemes that
            differ between lines, or two predictions for one id (file and line named).
    """
    path = Path(path)
    out = Predictions(path=path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: cannot read predictions ({getattr(e, 'strerror', None) or e})") from None
    head = text.lstrip()[:1]
    if head == "[":  # predict --format json: one JSON array of the per-image records
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise ModelError(f"{path}: not a JSON document ({e.msg}, line {e.lineno})") from None
        if not isinstance(doc, list):
            raise ModelError(f"{path}: expected a JSON array of prediction records")
        for i, rec in enumerate(doc):
            _read_object(rec, i + 1, out, f"{path} record {i + 1}")
    elif head == "{":  # JSONL; or one JSON object spread over several lines
        try:
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    _read_record(line, n, out)
        except ModelError as line_error:
            try:
                doc = json.loads(text)
            except ValueError:
                raise line_error from None
            out = Predictions(path=path)
            _read_object(doc, 1, out)
    elif head:  # predict --format csv: one row per face
        _read_csv_predictions(text, out)
    if out.records == 0:
        raise ModelError(f"{path}: the predictions file is empty")
    return out


def _read_csv_predictions(text: str, out: Predictions) -> None:
    """``facelm predict --format csv``: ``image,frame,face,box_x1..box_y2,score,angle,x0,y0,...,width,height,
    error``, one row per face (a row with an empty ``face`` is an image without faces)."""
    import io

    reader = csv.DictReader(io.StringIO(text))
    cols = reader.fieldnames or []
    if "image" not in cols or "x0" not in cols or "y0" not in cols:
        raise ModelError(f"{out.path}: not a predictions file (JSONL, a JSON array, or the CSV of facelm predict "
                         "with columns image, x0, y0, ...)")
    n_pts = 0
    while f"x{n_pts}" in cols and f"y{n_pts}" in cols:
        n_pts += 1
    recs: dict[tuple[str, str], dict] = {}
    for n, row in enumerate(reader, 2):
        where = f"{out.path}:{n}"
        if None in row or any(v is None for v in row.values()):
            raise ModelError(f"{where}: {len(cols)} columns expected")
        key = (row["image"], row.get("frame") or "")
        rec = recs.setdefault(key, {"image": row["image"], "faces": [], "error": None, "_line": n})
        if row.get("error"):
            rec["error"] = row["error"]
        if (row.get("face") or "").strip() == "":
            continue
        try:
            pts = [[float(row[f"x{k}"]) if row[f"x{k}"].strip() else None,
                    float(row[f"y{k}"]) if row[f"y{k}"].strip() else None] for k in range(n_pts)]
        except ValueError:
            raise ModelError(f"{where}: a landmark coordinate is not a number") from None
        rec["faces"].append({"landmarks": pts})
    for rec in recs.values():
        _read_object({k: v for k, v in rec.items() if k != "_line"}, rec["_line"], out)


def _key(p: str | Path) -> str:
    return os.path.realpath(p)


def match_predictions(preds: Predictions, manifest: Manifest, full: Manifest | None = None,
                      warn: Warn = _noop) -> tuple[np.ndarray, np.ndarray, dict]:
    """Assign predicted faces to the manifest's faces.

    A record whose ``id`` is a manifest sample id matches that face. Other records match by image: the
    prediction's path is tried as absolute, relative to the current folder, to the predictions file's folder and
    to the manifest's folder, then by file name when exactly one image of ``full`` has it. Within one image
    each ground-truth face takes the free predicted face whose points (mapped to the data's scheme) have the
    bounding box that overlaps the ground-truth points' most, ties broken by the nearest centroid (greedy, best
    pairs first): a second detection whose points collapsed inside the face (a small, wrong shape) cannot take
    the face from the full-size one.

    Args:
        preds: from :func:`read_predictions`.
        manifest: the faces to score (``N``, ``L`` landmarks).
        full: the whole dataset, to tell records outside the selection from records matching nothing.
        warn: receives one-line warnings (unmatched images, images the predictor failed on).

    Returns:
        ``(pred (N, L, 2) with NaN where missing, missing (N,) bool, details dict)``.

    Raises:
        ModelError: landmark count or scheme differing from the manifest's.
    """
    full = full if full is not None else manifest
    smap, n_lm = _scheme_map(preds, manifest)
    n = len(manifest)
    pred = np.full((n, n_lm, 2), np.nan)
    found = np.zeros(n, dtype=bool)
    images = _ImageIndex(preds, manifest, full)

    used: set[int] = set()  # ids of _PredFace objects already assigned
    id_to_i = {s.id: i for i, s in enumerate(manifest.samples)}
    for fid, face in preds.by_id.items():
        i = id_to_i.get(fid)
        if i is not None:
            pred[i], found[i] = face.landmarks, True
            used.add(id(face))

    gt_boxes = point_boxes(manifest.landmarks, min_points=2)
    gt_boxes = np.where(np.isnan(gt_boxes), manifest.boxes(), gt_boxes)  # too few points: the face box
    unmatched, outside = [], 0
    for img, faces in preds.by_image.items():
        faces = [f for f in faces if id(f) not in used and not (f.id is not None and f.id in images.full_ids)]
        if not faces:
            continue
        k = images.resolve(img)
        if k is None:
            unmatched.append(img)
            continue
        if k not in images.selected:
            outside += 1
            continue
        gts = [i for i in images.selected[k] if not found[i]]
        for i, face in _assign(gts, faces, gt_boxes, smap):
            pred[i], found[i] = face.landmarks, True
    errors_hit: dict[str, str] = {}
    for img, msg in preds.errors.items():
        k = images.resolve(img)
        if k is not None and any(not found[i] for i in images.selected.get(k, [])):
            errors_hit[img] = msg
    _warn_unused(preds, full, unmatched, errors_hit, warn)
    missing = ~found
    details = {"file": str(preds.path), "records": preds.records, "repeated_images": len(preds.repeated),
               "unmatched_images": len(unmatched),
               "images_outside_selection": outside, "image_errors": len(errors_hit),
               "missing_ids": [manifest.samples[i].id for i in np.flatnonzero(missing)[:50]]}
    if smap is not None:
        pred = smap.apply(pred)
        details["scheme_map"] = {"from": smap.source, "to": smap.target, "points_scored": int(smap.mapped.sum()),
                                 "mapped": smap.mapped.tolist()}
    return pred, missing, details


def _warn_unused(preds: Predictions, full: Manifest, unmatched: list[str], errors_hit: dict[str, str],
                 warn: Warn) -> None:
    """One warning each: records matching no image, images given twice, images the predictor failed on."""
    if unmatched:
        warn(f"{preds.path}: predictions for {len(unmatched)} image(s) match no image of {full.path} "
             f"(e.g. {unmatched[0]!r}); their faces are ignored")
    if preds.repeated:
        warn(f"{preds.path}: {len(preds.repeated)} per-image record(s) repeat an image already in the file (e.g. "
             f"{preds.repeated[0]!r}), as when two runs are concatenated; the faces of all of them compete for that "
             "image's ground truth")
    if errors_hit:
        img, msg = next(iter(errors_hit.items()))
        warn(f"{preds.path}: the predictor failed on {len(errors_hit)} image(s) of the evaluated faces "
             f"(e.g. {img!r}: {msg})")


def _scheme_map(preds: Predictions, manifest: Manifest):
    """(scheme map from the predictions' scheme to the data's, or None; landmarks per predicted face)."""
    from facelm.scheme_maps import get_map, has_map

    n_lm = manifest.landmarks.shape[1]
    smap = None
    if preds.scheme is not None and preds.scheme != manifest.scheme:
        if not has_map(preds.scheme, manifest.scheme):
            raise ModelError(f"{preds.path}: predictions are for scheme {preds.scheme!r}, the data is "
                             f"{manifest.scheme!r}, and no scheme map links them (docs/formats.md, 'Scheme maps')")
        smap = get_map(preds.scheme, manifest.scheme)  # scored on the data's points that have an equivalent
        n_lm = smap.matrix.shape[1]
    if preds.num_landmarks is not None and preds.num_landmarks != n_lm:
        raise ModelError(f"{preds.path}: predictions have {preds.num_landmarks} landmarks per face, the data "
                         f"({manifest.scheme}) has {n_lm}" if smap is None else
                         f"{preds.path}: predictions have {preds.num_landmarks} landmarks per face, scheme "
                         f"{preds.scheme} has {n_lm}")
    return smap, n_lm


class _ImageIndex:
    """The images of a dataset by real path: which rows of the selection each holds (``selected``), and
    :meth:`resolve` for an image path as a predictions file names it."""

    def __init__(self, preds: Predictions, manifest: Manifest, full: Manifest):
        self.selected: dict[str, list[int]] = {}
        for i in range(len(manifest)):
            self.selected.setdefault(_key(manifest.root / manifest.samples[i].image), []).append(i)
        self.full_keys = {_key(full.root / s.image) for s in full.samples}
        self.full_ids = {s.id for s in full.samples}
        self.by_name: dict[str, set[str]] = {}
        for k in self.full_keys:
            self.by_name.setdefault(os.path.basename(k), set()).add(k)
        self.roots = (Path.cwd(), preds.path.parent, manifest.root, full.root)

    def resolve(self, img: str) -> str | None:
        """The dataset image ``img`` names: tried as absolute, then relative to the current folder, the
        predictions file's folder and the dataset folders, then by file name when exactly one image has it."""
        p = Path(img)
        cands = [p] if p.is_absolute() else [r / p for r in self.roots]
        for c in cands:
            k = _key(c)
            if k in self.full_keys:
                return k
        keys = self.by_name.get(p.name, set())
        return next(iter(keys)) if len(keys) == 1 else None


def _assign(gts: list[int], faces: list[_PredFace], gt_boxes: np.ndarray, smap) -> list[tuple[int, _PredFace]]:
    """Greedy one-to-one assignment of predicted faces to ground-truth rows ``gts``: pairs by the overlap (IoU) of
    the bounding boxes of the ground-truth points and of the predicted points mapped to the data's scheme (``smap``,
    or as they are), highest first, then by the distance between the two boxes' centres."""
    if not gts:
        return []
    shapes = np.stack([f.landmarks for f in faces]).astype(np.float64)
    if smap is not None:
        shapes = smap.apply(shapes)
    pb = point_boxes(shapes, min_points=2)
    gb = gt_boxes[gts]
    lo = np.maximum(gb[:, None, :2], pb[None, :, :2])
    hi = np.minimum(gb[:, None, 2:], pb[None, :, 2:])
    with np.errstate(invalid="ignore", over="ignore"):  # 1e308 coordinates: inf, then no match
        inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
        area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)
        iou = inter / (area(gb)[:, None] + area(pb)[None, :] - inter)
        dist = np.linalg.norm((gb[:, None, :2] + gb[:, None, 2:]) / 2 - (pb[None, :, :2] + pb[None, :, 2:]) / 2,
                              axis=-1)
    iou[~np.isfinite(iou)] = 0.0
    dist[~np.isfinite(dist)] = np.inf
    order = sorted((-iou[a, b], dist[a, b], a, b) for a in range(len(gts)) for b in range(len(faces)))
    ga, fb, out = set(), set(), []
    for _, _, a, b in order:
        if a in ga or b in fb:
            continue
        ga.add(a)
        fb.add(b)
        out.append((gts[a], faces[b]))
    return out
