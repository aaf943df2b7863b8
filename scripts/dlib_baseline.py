"""Score dlib's 68-point shape predictor on a facelm prepared dataset.

Writes a per-face predictions JSONL that ``facelm evaluate`` reads (matched by manifest ``id``)::

    python scripts/dlib_baseline.py work/ytf --split val --out dlib_gt.jsonl --box gt-square
    python scripts/dlib_baseline.py work/ytf --split val --out dlib_det.jsonl --box dlib-detector
    facelm evaluate --data work/ytf --split val --protocol custom dlib_gt.jsonl dlib_det.jsonl

Box modes (the rectangle handed to ``dlib.shape_predictor``):

* ``gt-square``: the square face box facelm's models are cropped from,
  ``facelm.geometry.landmark_square(landmarks, 1.0)`` (uses the ground truth; dlib's HOG detector boxes are
  tighter than this square, so dlib is somewhat out of its training distribution here);
* ``dlib-detector``: ``dlib.get_frontal_face_detector()`` on the image (``--upsample`` times upsampled), keeping the
  detection with the highest IoU with the ground-truth landmark square; when there is no detection (or none
  overlaps it) the gt square is used instead and counted as a fallback.

Requires ``pip install dlib-bin face-recognition-models`` (the model is ``shape_predictor_68_face_landmarks.dat``
from face_recognition_models). Never evaluate this on utkface-dlib68: its labels were made by this very model.

Output lines: ``{"id", "image" (absolute path), "scheme": "300w68", "landmarks" [[x, y] * 68] (0-based image
pixels as dlib returns them), "box" [x1, y1, x2, y2] (the dlib rectangle, inclusive corners), "box_source"}``.
A JSON summary (faces, fallbacks, seconds, ...) goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

from facelm.geometry import landmark_square
from facelm.imageio import read_image
from facelm.manifest import load_manifest

MODEL_NAME = "shape_predictor_68_face_landmarks.dat"


def model_path(explicit: str | None) -> Path:
    """The 68-point model file: ``--model`` or the one inside face_recognition_models.

    face_recognition_models' ``__init__`` imports ``pkg_resources`` (setuptools), which recent environments lack,
    so the package folder is located without importing it; the official helper is tried as a fallback.
    """
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "models" / MODEL_NAME
            if p.is_file():
                return p
    try:
        import face_recognition_models

        return Path(face_recognition_models.pose_predictor_model_location())
    except ImportError as e:
        sys.exit(f"error: cannot find {MODEL_NAME} ({e}); `pip install face-recognition-models` or pass --model")


def square_rect(dlib, landmarks: np.ndarray):
    """dlib.rectangle (inclusive integer corners) of the ground-truth landmark square."""
    c, side = landmark_square(landmarks, 1.0)
    x1, y1 = c - side / 2.0
    x2, y2 = c + side / 2.0
    return dlib.rectangle(round(float(x1)), round(float(y1)), round(float(x2)), round(float(y2)))


def rect_edges(r) -> np.ndarray:
    """Pixel-edge box [x1, y1, x2, y2] of an inclusive dlib rectangle."""
    return np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prepared", help="prepared dataset folder (from facelm prepare) or its manifest.jsonl")
    ap.add_argument("--split", default="val", help="train, val, test or all (default val)")
    ap.add_argument("--out", required=True, help="predictions JSONL to write")
    ap.add_argument("--box", choices=["gt-square", "dlib-detector"], default="gt-square")
    ap.add_argument("--upsample", type=int, default=1, help="dlib detector upsampling (default 1)")
    ap.add_argument("--min-iou", type=float, default=0.0,
                    help="dlib-detector: a detection must overlap the gt square by more than this (default 0)")
    ap.add_argument("--model", help=f"path to {MODEL_NAME} (default: the face_recognition_models copy)")
    ap.add_argument("--limit", type=int, help="only the first N faces (smoke tests)")
    args = ap.parse_args(argv)

    try:
        import dlib
    except ImportError:
        sys.exit("error: dlib is not installed (`pip install dlib-bin face-recognition-models`)")

    mp = model_path(args.model)
    if not mp.is_file():
        sys.exit(f"error: {mp}: model file not found")
    predictor = dlib.shape_predictor(str(mp))
    detector = dlib.get_frontal_face_detector() if args.box == "dlib-detector" else None

    full = load_manifest(args.prepared)
    if full.landmarks.shape[1] != 68:
        sys.exit(f"error: the dataset has {full.landmarks.shape[1]} landmarks per face; dlib predicts 68 (300w68)")
    m = full if args.split == "all" else full.split(args.split)
    idx = list(range(len(m)))[: args.limit] if args.limit else list(range(len(m)))
    if not idx:
        sys.exit(f"error: no faces in split {args.split!r}")

    # group faces by image so each image is read (and detected) once
    by_image: dict[Path, list[int]] = {}
    for i in idx:
        by_image.setdefault(m.image_path(i), []).append(i)

    t0 = time.perf_counter()
    faces = fallbacks = no_detection = detections = 0
    ious: list[float] = []
    out_p = Path(args.out)
    out_p.parent.mkdir(parents=True, exist_ok=True)
    with open(out_p, "w", encoding="utf-8") as f:
        for k, (img_path, face_idx) in enumerate(by_image.items(), 1):
            img = np.ascontiguousarray(read_image(img_path))
            dets = list(detector(img, args.upsample)) if detector is not None else []
            detections += len(dets)
            for i in face_idx:
                s = m.samples[i]
                gt_rect = square_rect(dlib, m.landmarks[i])
                rect, source = gt_rect, "gt-square"
                if detector is not None:
                    if dets:
                        g = rect_edges(gt_rect)
                        scores = [iou(rect_edges(d), g) for d in dets]
                        b = int(np.argmax(scores))
                        if scores[b] > args.min_iou:
                            rect, source = dets[b], "dlib-detector"
                            ious.append(scores[b])
                    else:
                        no_detection += 1
                    if source != "dlib-detector":
                        source = "gt-square-fallback"
                        fallbacks += 1
                shape = predictor(img, rect)
                lm = [[float(shape.part(j).x), float(shape.part(j).y)] for j in range(shape.num_parts)]
                rec = {"id": s.id, "image": str(img_path), "scheme": "300w68", "landmarks": lm,
                       "box": [rect.left(), rect.top(), rect.right(), rect.bottom()], "box_source": source}
                f.write(json.dumps(rec) + "\n")
                faces += 1
            if k % 50 == 0 or k == len(by_image):
                print(f"[dlib_baseline] {k}/{len(by_image)} images, {faces} faces, {fallbacks} fallbacks, "
                      f"{time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)

    summary = {"data": str(full.path), "split": args.split, "box": args.box, "out": str(out_p),
               "model": str(mp), "dlib": getattr(dlib, "__version__", "?"), "images": len(by_image),
               "faces": faces, "fallbacks": fallbacks, "seconds": round(time.perf_counter() - t0, 2)}
    if detector is not None:
        summary.update(upsample=args.upsample, detections=detections, faces_in_images_without_detection=no_detection,
                       mean_iou=round(float(np.mean(ious)), 4) if ious else None)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
