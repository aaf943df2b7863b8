"""Synthetic faces with known landmarks, for tests, demos and benchmarks (no real data needed).

``template_68()`` is a drawn 68-point iBUG-order face; ``make_dataset`` renders images where every landmark is a
visible dot on a face-like blob, with random similarity transforms, and writes a plain ``image,x0,y0,...`` CSV
(the ``csv`` format of ``facelm prepare``).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

__all__ = ["template_68", "make_dataset"]


def _arc(cx, cy, rx, ry, a0, a1, n):
    t = np.linspace(math.radians(a0), math.radians(a1), n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def template_68() -> np.ndarray:
    """A 68-point face in the unit square (x right, y down), iBUG order, subject facing the camera."""
    jaw = _arc(0.5, 0.42, 0.46, 0.55, 170, 10, 17)  # sweep from the image left down through the chin
    jaw[:, 1] = 0.42 + np.abs(jaw[:, 1] - 0.42)
    jaw = jaw[np.argsort(jaw[:, 0])]
    rbrow = _arc(0.3, 0.33, 0.14, 0.06, 200, 340, 5)
    lbrow = _arc(0.7, 0.33, 0.14, 0.06, 200, 340, 5)
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.38, 0.58, 4)], 1)
    nostrils = np.stack([np.linspace(0.42, 0.58, 5), 0.63 + 0.02 * np.array([0, 1, 1.5, 1, 0])], 1)

    def eye(cx):
        # outer corner first for the image-left eye (iBUG 36..41), inner corner first for the right (42..47)
        pts = _arc(cx, 0.42, 0.075, 0.035, 180, 360 + 180, 7)[:6]
        return pts

    reye = eye(0.3)
    leye = eye(0.7)
    outer = _arc(0.5, 0.77, 0.16, 0.07, 180, 540, 13)[:12]
    inner = _arc(0.5, 0.77, 0.1, 0.03, 180, 540, 9)[:8]
    pts = np.concatenate([jaw, rbrow, lbrow, bridge, nostrils, reye, leye, outer, inner])
    assert pts.shape == (68, 2)
    return pts


def make_dataset(folder: str | Path, n: int = 16, size: int = 96, seed: int = 0, rotate: float = 15.0,
                 csv_name: str = "landmarks.csv") -> tuple[Path, np.ndarray]:
    """Render ``n`` synthetic face images and their CSV into ``folder``.

    Returns (CSV path, landmarks ``(n, 68, 2)`` in 0-based image pixels).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tpl = template_68() - 0.5
    rows, all_lm = [], []
    for i in range(n):
        scale = size * rng.uniform(0.45, 0.6)
        ang = math.radians(rng.uniform(-rotate, rotate))
        c, s = math.cos(ang), math.sin(ang)
        centre = np.array([size / 2, size / 2]) + rng.uniform(-0.06, 0.06, 2) * size
        lm = (tpl * scale) @ np.array([[c, s], [-s, c]]) + centre
        img = np.full((size, size, 3), rng.integers(40, 90), np.uint8)
        cv2.ellipse(img, (int(centre[0]), int(centre[1])), (int(scale * 0.48), int(scale * 0.58)),
                    math.degrees(ang), 0, 360, (180, 150, 130), -1, cv2.LINE_AA)
        for k, (x, y) in enumerate(lm):
            col = (30, 30, 200) if k < 17 else (20, 20, 20) if k < 48 else (200, 30, 30)
            cv2.circle(img, (int(round(x)), int(round(y))), 1, col, -1, cv2.LINE_AA)
        name = f"s{i:04d}_face.png"
        cv2.imwrite(str(folder / name), img)
        rows.append(name + "," + ",".join(f"{v:.3f}" for v in lm.reshape(-1)))
        all_lm.append(lm)
    header = "," + ",".join(str(k) for k in range(136))
    (folder / csv_name).write_text(header + "\n" + "\n".join(rows) + "\n")
    return folder / csv_name, np.array(all_lm)
