"""Steady video: the One-Euro filter (facelm/smoothing.py), IoU tracks (facelm/runtime/tracking.py), ``predict
--smooth`` on a video file, and the measured jitter reduction and lag with the shipped models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import load_script, shared, write_video
from facelm.cli import app
from facelm.runtime.results import FaceResult, ImageResult
from facelm.runtime.tracking import FaceTracker, box_iou, greedy_match
from facelm.schemes import get_scheme
from facelm.smoothing import OneEuroFilter

REPO = Path(__file__).resolve().parents[1]


def _measure():
    return load_script("smoothing_measure")


# -- the filter ---------------------------------------------------------------------------------------------------

def test_one_euro_smooths_a_still_signal_and_follows_a_ramp():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=0.5, beta=3.0)
    t = np.arange(300) / 30.0
    noisy = 10 + rng.normal(0, 1.0, 300)  # noise of 1% of the face size (scale 100)
    out = np.array([f(np.array([v]), ti, scale=100.0)[0] for v, ti in zip(noisy, t)])
    assert np.std(np.diff(out[30:])) < 0.2 * np.std(np.diff(noisy[30:]))  # still: jitter down > 5x
    f.reset()
    ramp = 100.0 * t  # one face size (100) per second: the cutoff rises, the lag stays small
    out = np.array([f(np.array([v]), ti, scale=100.0)[0] for v, ti in zip(ramp, t)])
    lag = (ramp[60:] - out[60:]).mean() / 100.0
    assert 0 < lag < 0.05  # seconds behind
    slow = OneEuroFilter(min_cutoff=0.5, beta=0.0)  # no speed term: a plain low-pass, lags by about 1/(2 pi fc)
    out = np.array([slow(np.array([v]), ti)[0] for v, ti in zip(ramp, t)])
    assert 0.2 < (ramp[150:] - out[150:]).mean() / 100.0 < 0.4


def test_one_euro_first_value_time_going_back_nan_and_bad_settings():
    f = OneEuroFilter()
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert np.array_equal(f(x, 0.0), x)  # the first value passes unchanged
    y = f(x + 1, 0.1)
    assert np.all((y > x) & (y < x + 1))
    assert np.array_equal(f(x, 0.05), x)  # time went back: restart
    z = f(np.array([[np.nan, 2.0], [3.0, 4.0]]), 0.2)
    assert np.isnan(z[0, 0]) and np.isfinite(z[1:]).all()
    assert np.isfinite(f(x, 0.3)).all()  # a NaN does not poison the state
    for kw in ({"min_cutoff": 0}, {"beta": -1}, {"d_cutoff": math.nan}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            OneEuroFilter(**kw)


# -- tracks -------------------------------------------------------------------------------------------------------

def _face(x: float, y: float = 50.0, side: float = 40.0) -> FaceResult:
    lm = np.tile([x, y], (68, 1)).astype(float) + np.linspace(-side / 3, side / 3, 68)[:, None]
    return FaceResult(box=np.array([x - side / 2, y - side / 2, x + side / 2, y + side / 2]), score=0.9, angle=0.0,
                      landmarks=lm, stage1=lm.copy(), square=np.array([x, y, side]))


def _frame(k: int, xs: list[float], name: str = "v.mp4", fps: float = 30.0) -> ImageResult:
    return ImageResult(name, k, 640, 480, [_face(x) for x in xs], fps=fps)


def test_box_iou_and_greedy_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    iou = box_iou(a, np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]]))
    assert iou[0, 0] == 1 and iou[0, 1] == pytest.approx(1 / 3) and iou[1].max() == 0
    assert greedy_match(np.array([[0.9, 0.8], [0.85, 0.1]]), 0.3) == [(0, 0)]  # (1, 1) is below the threshold
    assert greedy_match(np.array([[0.5, 0.8], [0.7, 0.1]]), 0.3) == [(0, 1), (1, 0)]


def test_track_ids_follow_faces_by_overlap_and_restart_per_video():
    tr = FaceTracker(get_scheme("300w68"))
    ids = []
    for k, xs in enumerate([[100, 300], [305, 104], [108], [112, 500], [116, 505]]):
        r = tr.update(_frame(k, xs))
        ids.append([f.track for f in r.faces])
    assert ids == [[0, 1], [1, 0], [0], [0, 2], [0, 2]]
    gap = tr.update(_frame(5 + 40, [120]))  # more than MAX_GAP_S (1 s at 30 fps) later: a new track
    assert gap.faces[0].track == 3
    assert tr.update(_frame(0, [120], name="w.mp4")).faces[0].track == 0  # another video starts afresh
    still = ImageResult("a.jpg", None, 640, 480, [_face(100)])
    assert tr.update(still).faces[0].track is None


def test_tracker_smooths_landmarks_and_recomputes_the_angle():
    rng = np.random.default_rng(0)
    scheme = get_scheme("300w68")
    raw, smooth = FaceTracker(scheme), FaceTracker(scheme, smooth=True)
    a, b = [], []
    for k in range(60):
        fr = _frame(k, [200.0])
        fr.faces[0].landmarks = fr.faces[0].landmarks + rng.normal(0, 1.0, (68, 2))
        a.append(raw.update(_copy(fr)).faces[0].landmarks)
        out = smooth.update(fr)
        b.append(out.faces[0].landmarks)
        le, re = scheme.eye_centres(out.faces[0].landmarks[None])
        assert out.faces[0].angle == pytest.approx(float(np.degrees(np.arctan2(*(re - le)[0][::-1]))), abs=1e-6)
    ja, jb = (np.abs(np.diff(np.array(v)[10:], axis=0)).mean() for v in (a, b))
    assert jb < ja / 4


def _copy(r: ImageResult) -> ImageResult:
    import copy

    return copy.deepcopy(r)


# -- the CLI ------------------------------------------------------------------------------------------------------

def test_predict_smooth_on_a_video_gives_tracks_and_steadier_points(tmp_path):
    m = _measure()
    from facelm.imageio import read_image

    frames = m.still_clip(read_image(REPO / "examples" / "astronaut.jpg"), n=16)
    clip = write_video(tmp_path / "still.avi", frames, fps=25.0)
    runs = {}
    for name, extra in (("raw", []), ("smooth", ["--smooth"])):
        r = CliRunner().invoke(app, ["predict", str(clip), "-q", "--threads", "1", *extra])
        assert r.exit_code == 0, r.stderr
        recs = [json.loads(x) for x in r.stdout.splitlines()]
        assert [x["frame"] for x in recs] == list(range(16))
        assert all(f["track"] == 0 for x in recs for f in x["faces"])
        runs[name] = np.array([x["faces"][0]["landmarks"] for x in recs])
        assert "pose" in recs[0]["faces"][0] and 0 <= recs[0]["faces"][0]["quality"] <= 1
    jit = {k: np.linalg.norm(np.diff(v[3:], axis=0), axis=-1).mean() for k, v in runs.items()}
    assert jit["smooth"] < jit["raw"] / 2
    r = CliRunner().invoke(app, ["predict", str(clip), "-q", "-f", "csv", "--smooth", "--threads", "1"])
    head, row = r.stdout.splitlines()[:2]
    cols = dict(zip(head.split(","), row.split(",")))
    assert cols["track"] == "0" and float(cols["quality"]) > 0.5 and cols["yaw"] and cols["roll"]


def test_smooth_on_still_images_warns_and_bad_values_are_exit_2():
    img = str(REPO / "examples" / "astronaut.jpg")
    r = CliRunner().invoke(app, ["predict", img, "-q", "--smooth", "--threads", "1"])
    assert r.exit_code == 0 and "still image" in r.stderr
    plain = CliRunner().invoke(app, ["predict", img, "-q", "--threads", "1"])
    assert json.loads(r.stdout)["faces"] == json.loads(plain.stdout)["faces"]  # no effect
    for opt, val in (("--smooth-min-cutoff", "0"), ("--smooth-beta", "-1"), ("--smooth-min-cutoff", "nan")):
        r = CliRunner().invoke(app, ["predict", img, "--smooth", opt, val])
        assert r.exit_code == 2 and opt in r.stderr and len(r.stderr.strip().splitlines()) == 1


# -- the measurement (docs/predict.md, "Steady video") ------------------------------------------------------------

@pytest.fixture(scope="module")
def landmarker():
    from facelm.detectors import create_detector
    from facelm.runtime import Landmarker, load_models

    return Landmarker(load_models(REPO / "models", threads=1), create_detector("auto"), workers=1)


def test_smoothing_cuts_jitter_on_a_still_face_and_lags_little_on_a_moving_one(landmarker):
    """Shipped models, default settings: jitter on the noisy still astronaut drops at least 5x (measured 13x), and
    on a face sliding at one face size per second the smoothed points trail by less than 50 ms (measured 27 ms)."""
    from facelm.imageio import read_image

    m = _measure()
    img = read_image(REPO / "examples" / "astronaut.jpg")
    still = m.measure_still(landmarker, img, n=40)
    assert still["reduction"] > 5, still
    moving = m.measure_moving(landmarker, img, n=45, speed=1.0)
    assert 0 < moving["lag_ms"] < 50, moving
    assert moving["jitter_smooth_pct"] < moving["jitter_raw_pct"]


def test_smoothing_on_real_youtube_faces_frames(landmarker):
    """Held real frames of YouTube Faces videos (ytf68-train), re-compressed with noise: jitter down at least
    3x. Each frame is held 20 frames, as in the documented measurement: with 12 the 7 frames measured after each
    jump still hold the filter settling on the new frame, which keeps the ratio near 3x whatever the models
    (measured 3.0x with one stage 2 and 2.9x with the next, both 4.6-4.7x at 20)."""
    m = _measure()
    rep = m.measure_ytf(landmarker, shared("ytf68-train"), count=3, hold=20)
    assert rep["videos"] >= 2 and rep["reduction"] > 3, rep
