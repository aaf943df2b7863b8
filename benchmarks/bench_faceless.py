"""What the turned looks cost on images with no face at all (``--turned-looks``, the default, against
``--no-turned-looks``): the default pipeline on smooth random images of a few sizes, which YuNet finds no face in
upright or turned, so every look runs. Ratios are against the upright look alone, measured in the same run.

    python benchmarks/bench_faceless.py [--models models] [--sizes 640x480,2048x1536] [--rounds 3]

Prints one JSON document on stdout: seconds per image with / without the turned looks and their ratio, per size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from facelm.cpu_features import cpu_name
from facelm.detectors import create_detector
from facelm.runtime import Landmarker, load_models


def faceless(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Smooth colour noise: no face for any detector, but texture everywhere (not a flat image it skips fast)."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 5)


def seconds(lm: Landmarker, img: np.ndarray, rounds: int) -> float:
    assert lm.predict_image(img).faces == [], "a face was found in the noise image"
    t = time.perf_counter()
    for _ in range(rounds):
        lm.predict_image(img)
    return (time.perf_counter() - t) / rounds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=str(Path(__file__).resolve().parents[1] / "models"))
    ap.add_argument("--sizes", default="640x480,2048x1536", help="comma list of WxH")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    pair = load_models(Path(args.models))
    det = create_detector("auto")
    on, off = Landmarker(pair, det, turn_search=True), Landmarker(pair, det, turn_search=False)
    out: dict = {"cpu": cpu_name(), "rounds": args.rounds, "sizes": {}}
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        img = faceless(w, h)
        s_off, s_on = seconds(off, img, args.rounds), seconds(on, img, args.rounds)
        out["sizes"][size] = {"no_turned_looks_s": round(s_off, 4), "turned_looks_s": round(s_on, 4),
                              "ratio": round(s_on / s_off, 2)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
