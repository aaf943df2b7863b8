"""Jitter and lag of ``facelm predict --smooth`` (the One-Euro filter of ``facelm/runtime/tracking.py``).

    python scripts/smoothing_measure.py [--models models] [--ytf ../shared/data/ytf68-train] [--videos 8]
                                        [--min-cutoff 1.0 --beta 1.0] [--out work/smoothing.json]

Three clips, each run through the default pipeline (YuNet, both stages, flip TTA, levelling) at 30 fps, then through
the tracker without and with smoothing:

* **still**: ``examples/astronaut.jpg`` repeated for 60 frames, each with fresh Gaussian pixel noise (sigma 4
  grey levels) and JPEG-compressed at quality 75-95: a still face, so every frame-to-frame motion is jitter;
* **ytf**: YouTube Faces videos (``ytf68-train``; each has three real frames ``NAME_k0..k2``): each frame held
  for 20 frames, re-compressed and noised as above; jitter is measured within the holds (a still face in a real
  video frame), and the jumps between the three frames show the lag on a sudden move (frames until the smoothed points
  are within 5% of the inter-ocular distance of where they settle);
* **moving**: the astronaut photo sliding right at a constant speed (``--speed`` face sizes per second) on a
  grey canvas: ``lag`` is how far the smoothed points trail the unsmoothed ones along the motion, in
  milliseconds (offset / speed) and in % of the inter-ocular distance.

Jitter: the mean distance a point moves between consecutive frames, in % of the inter-ocular distance (outer eye
corners), averaged over the 68 points and the frames. Prints and writes a JSON report.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FPS = 30.0


def noisy(img: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    """``img`` with Gaussian pixel noise, JPEG-compressed at a random quality in 75..95 (codec noise)."""
    import cv2

    out = np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(75, 96))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def still_clip(img: np.ndarray, n: int = 60, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [noisy(img, rng) for _ in range(n)]


def moving_clip(img: np.ndarray, n: int, px_per_frame: float, pad: int) -> list[np.ndarray]:
    """``img`` on a grey canvas ``pad`` px wider on each side, shifted right by ``px_per_frame`` each frame."""
    import cv2

    h, w = img.shape[:2]
    out = []
    for k in range(n):
        m = np.array([[1.0, 0, pad + k * px_per_frame - (n - 1) * px_per_frame / 2], [0, 1.0, 0]])
        out.append(cv2.warpAffine(img, m, (w + 2 * pad, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128)))
    return out


def predict_clip(lm, frames: list[np.ndarray], name: str = "clip.mp4") -> list:
    """The pipeline's results for the frames of one clip (in memory, as the video reader would give them)."""
    from facelm.sources import SourceItem

    items = [SourceItem(name, Path(name), frame=k, image=f, fps=FPS) for k, f in enumerate(frames)]
    return list(lm.run(items))


def tracked(results: list, scheme, smooth: bool, **kw) -> list:
    """Deep copies of ``results`` after the tracker (with or without smoothing)."""
    from facelm.runtime.tracking import FaceTracker

    tr = FaceTracker(scheme, smooth=smooth, **kw)
    return [tr.update(copy.deepcopy(r)) for r in results]


def track_points(results: list, track: int = 0) -> np.ndarray:
    """``(T, 68, 2)`` landmarks of one track (NaN in frames where it is missing)."""
    out = np.full((len(results), 68, 2), np.nan)
    for k, r in enumerate(results):
        for f in r.faces:
            if f.track == track:
                out[k] = f.landmarks
    return out


def iod(points: np.ndarray) -> float:
    return float(np.nanmedian(np.linalg.norm(points[:, 36] - points[:, 45], axis=-1)))


def jitter(points: np.ndarray, motion: np.ndarray | None = None, skip: int = 0) -> float:
    """Mean frame-to-frame point motion (minus the known ``motion`` per frame), % of the inter-ocular distance."""
    d = np.diff(points[skip:], axis=0)
    if motion is not None:
        d = d - motion
    return float(np.nanmean(np.linalg.norm(d, axis=-1)) / iod(points) * 100)


def measure_still(lm, img: np.ndarray, n: int = 60, **kw) -> dict:
    res = predict_clip(lm, still_clip(img, n))
    raw, smooth = (track_points(tracked(res, lm.scheme, s, **kw)) for s in (False, True))
    jr, js = jitter(raw, skip=5), jitter(smooth, skip=5)
    return {"frames": n, "jitter_raw_pct": jr, "jitter_smooth_pct": js, "reduction": jr / js}


def measure_moving(lm, img: np.ndarray, n: int = 60, speed: float = 1.0, **kw) -> dict:
    """Lag on the astronaut sliding at ``speed`` face sizes per second (face size: the first frame's square)."""
    side = float(lm.predict_image(img).faces[0].square[2])
    ppf = speed * side / FPS
    res = predict_clip(lm, moving_clip(img, n, ppf, pad=int(ppf * n / 2) + 10))
    raw, smooth = (track_points(tracked(res, lm.scheme, s, **kw)) for s in (False, True))
    steady = slice(n // 3, None)
    offset = float(np.nanmean((raw[steady] - smooth[steady])[..., 0]))  # trailing behind: positive
    motion = np.array([ppf, 0.0])
    return {"frames": n, "speed_face_sizes_per_s": speed, "px_per_frame": ppf,
            "lag_ms": offset / ppf / FPS * 1000, "lag_pct_iod": offset / iod(raw) * 100,
            "jitter_raw_pct": jitter(raw[steady], motion), "jitter_smooth_pct": jitter(smooth[steady], motion)}


def ytf_videos(root: Path, count: int) -> list[list[Path]]:
    """``count`` three-frame YouTube Faces videos (``NAME_k0``, ``_k1``, ``_k2`` of the same size), by name."""
    groups: dict[str, list[Path]] = {}
    for p in sorted(root.glob("*.jpg")):
        groups.setdefault(p.stem[:-1], []).append(p)
    vids = [v for v in groups.values() if len(v) == 3]
    step = max(1, len(vids) // count)
    return vids[::step][:count]


def measure_ytf(lm, root: Path, count: int = 8, hold: int = 20, **kw) -> dict:
    from facelm.imageio import read_image

    rng = np.random.default_rng(1)
    jr, js, settle_raw, settle_smooth = [], [], [], []
    for vid in ytf_videos(root, count):
        frames = [noisy(read_image(p), rng) for p in vid for _ in range(hold)]
        res = predict_clip(lm, frames, vid[0].stem[:-1] + ".mp4")
        raw, smooth = (track_points(tracked(res, lm.scheme, s, **kw)) for s in (False, True))
        if np.isnan(raw).any() or np.isnan(smooth).any():
            continue  # the face was lost in some frame: no single track to measure
        for k in range(3):
            seg = slice(k * hold + 5, (k + 1) * hold)
            jr.append(jitter(raw[seg]))
            js.append(jitter(smooth[seg]))
            if k:
                target, scale = raw[(k + 1) * hold - 5:(k + 1) * hold].mean(0), iod(raw)
                for pts, out in ((raw, settle_raw), (smooth, settle_smooth)):
                    d = np.linalg.norm(pts[k * hold:(k + 1) * hold] - target, axis=-1).mean(1) / scale
                    out.append(int(np.argmax(d <= 0.05)) if (d <= 0.05).any() else hold)
    return {"videos": len(jr) // 3, "jitter_raw_pct": float(np.mean(jr)), "jitter_smooth_pct": float(np.mean(js)),
            "reduction": float(np.mean(jr) / np.mean(js)),
            "settle_frames_raw": float(np.mean(settle_raw)), "settle_frames_smooth": float(np.mean(settle_smooth))}


def main(argv: list[str] | None = None) -> None:
    from facelm.detectors import create_detector
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--ytf", type=Path, default=REPO.parent / "shared" / "data" / "ytf68-train")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--min-cutoff", type=float, default=None)
    ap.add_argument("--beta", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    kw = {k: v for k, v in (("min_cutoff", a.min_cutoff), ("beta", a.beta)) if v is not None}
    lm = Landmarker(load_models(a.models, threads=a.threads), create_detector("auto"), workers=1)
    img = read_image(REPO / "examples" / "astronaut.jpg")
    rep = {"settings": kw or "defaults", "still": measure_still(lm, img, **kw),
           "moving": measure_moving(lm, img, speed=a.speed, **kw)}
    if a.ytf.is_dir():
        rep["ytf"] = measure_ytf(lm, a.ytf, a.videos, **kw)
    text = json.dumps(rep, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
