"""What the detector's looks inside given boxes cost (``--box-looks``, the default with ``--boxes``, against
``--no-box-looks``): each photo's faces are detected once (YuNet, the live pipeline), their face squares are then
given as boxes (``Landmarker.predict_boxes``, as ``facelm predict --boxes``) with and without the looks, the two
settings taking turns, best of ``--rounds``. ``--turn`` turns the photos and their squares by a quarter-turn
multiple first (the looks stop after one upright look when it scores 0.93 or more, so upright faces cost less).

    python benchmarks/bench_box_looks.py IMAGES [--limit 111] [--turn 0|90|180|270] [--precision fp32|int8]
                                        [--rounds 2] [--models models]

IMAGES: anything ``facelm predict`` takes (a folder, a list file). Prints one JSON document on stdout: the CPU,
the faces, seconds with / without the looks, their ratio and the added milliseconds per face.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facelm.cpu_features import cpu_name
from facelm.detectors import create_detector
from facelm.detectors.boxmap import boxes_to_squares
from facelm.geometry import apply_affine
from facelm.imageio import read_image
from facelm.runtime import Landmarker, load_models
from facelm.runtime.orientation import look_matrix, turned_look
from facelm.sources import iter_sources


def _turned(img: np.ndarray, squares: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``img`` turned by ``k`` counter-clockwise quarter turns and the face squares ``(N, 3)`` moved with it."""
    h, w = img.shape[:2]
    sq = squares.copy()
    sq[:, :2] = apply_affine(look_matrix(90 * k, w, h), squares[:, :2])
    return turned_look(img, 90 * k), sq


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("--limit", type=int, default=111)
    ap.add_argument("--turn", type=int, default=0, choices=[0, 90, 180, 270])
    ap.add_argument("--precision", default="int8", choices=["fp32", "int8"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", default=str(Path(__file__).resolve().parents[1] / "models"))
    args = ap.parse_args(argv)
    items = [it for it in iter_sources([str(args.images)]) if it.error is None][: args.limit]
    images = [it.image if it.image is not None else read_image(it.path) for it in items]
    if not images:
        ap.error(f"{args.images}: no images")
    pair = load_models(Path(args.models), threads=1, precision=args.precision)
    det = create_detector("auto", threads=1)
    live = Landmarker(pair, det, workers=1)
    cases = []
    for img in images:
        faces = live.predict_image(img).faces
        if faces:
            sq = boxes_to_squares(np.array([f.box for f in faces]), live.box_map)
            cases.append(_turned(img, sq, args.turn // 90))
    boxes = [np.column_stack([s[:, :2] - s[:, 2:] / 2, s[:, :2] + s[:, 2:] / 2]) for _, s in cases]
    runs = {looks: Landmarker(pair, create_detector(no_detect=True), workers=1, box_looks=det if looks else None)
            for looks in (False, True)}
    best = {False: float("inf"), True: float("inf")}
    for _ in range(args.rounds):
        for looks, lm in runs.items():
            t = time.perf_counter()
            for (img, _), b in zip(cases, boxes):
                lm.predict_boxes(img, b)
            best[looks] = min(best[looks], time.perf_counter() - t)
    n = sum(len(b) for b in boxes)
    print(json.dumps({"cpu": cpu_name(), "images": len(cases), "faces": n, "turn": args.turn,
                      "precision": args.precision, "rounds": args.rounds, "no_looks_s": round(best[False], 3),
                      "looks_s": round(best[True], 3), "ratio": round(best[True] / best[False], 3),
                      "added_ms_per_face": round(1000 * (best[True] - best[False]) / max(n, 1), 1)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
