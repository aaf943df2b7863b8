"""Step 2c of the pipeline (facelm.runtime.rescue): faces whose levelled reading has a low quality are read again
from other starting crops, and keep the best reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facelm.cli import app
from facelm.runtime.rescue import (
    RESCUE_MARGIN,
    RESCUE_MAX_SHIFT,
    RESCUE_QUALITY,
    RESCUE_SCALES,
    RESCUE_TURNS,
    off_square,
    pick_rescued,
    rescue_frames,
)

REPO = Path(__file__).resolve().parents[1]


def test_rescue_frames_cover_every_scale_and_turn_per_face_in_blocks():
    squares = np.array([[10.0, 20.0, 100.0], [50.0, 60.0, 40.0]])
    frames = rescue_frames(squares, np.array([170.0, -20.0]))
    h = len(RESCUE_SCALES) * len(RESCUE_TURNS)
    assert frames.shape == (h * 2, 4)
    blocks = frames.reshape(h, 2, 4)
    np.testing.assert_array_equal(blocks[:, :, :2], np.broadcast_to(squares[:, :2], (h, 2, 2)))
    sides = {(round(f[0, 2] / 100, 6), round(f[1, 2] / 40, 6)) for f in blocks}
    assert sides == {(s, s) for s in RESCUE_SCALES}
    assert np.all((frames[:, 3] >= -180) & (frames[:, 3] < 180))
    # every face gets every turn from its own angle, in 30-degree steps, the first one unchanged
    for j, a in enumerate((170.0, -20.0)):
        turns = sorted({round((f[j, 3] - a) % 360, 6) for f in blocks})
        assert turns == sorted(t % 360 for t in RESCUE_TURNS)
    assert blocks[0, 0, 3] == 170.0 and RESCUE_TURNS[0] == 0


def test_pick_rescued_takes_the_best_reading_only_when_it_is_clearly_better():
    first = np.array([0.05, 0.15, 0.01, 0.1])
    cand = np.array([[0.10, 0.20, np.nan, 0.1],
                     [0.90, 0.24, np.nan, 0.1],
                     [0.50, 0.10, np.nan, 0.1]])
    np.testing.assert_array_equal(pick_rescued(first, cand), [1, -1, -1, -1])
    # exactly the margin is enough; the earliest of equal readings wins
    cand2 = np.array([[0.1 + RESCUE_MARGIN, 0.0], [0.1 + RESCUE_MARGIN, 0.0]])
    np.testing.assert_array_equal(pick_rescued(np.array([0.1, 0.1]), cand2), [0, -1])


def test_off_square_flags_readings_whose_centre_left_the_face_square():
    square = np.array([[100.0, 100.0, 50.0]])
    shape = np.array([[[-10.0, -10.0], [10.0, 10.0]]])  # centred on the origin, 20 px wide
    inside = off_square(shape + [100.0 + 0.9 * RESCUE_MAX_SHIFT * 50, 100.0], square)
    outside = off_square(shape + [100.0, 100.0 + 1.1 * RESCUE_MAX_SHIFT * 50], square)
    assert inside.tolist() == [False] and outside.tolist() == [True]
    # a shape with no finite point is off its square (never picked)
    assert off_square(np.full((1, 2, 2), np.nan), square).tolist() == [True]


def _astronaut():
    from facelm.detectors import create_detector
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models

    # fp32: which frames stage 1 misreads depends on the int8 kernels of the CPU (AMX, VNNI, AVX2) near the edges of
    # the failing range; the rescue logic under test does not
    pair = load_models(REPO / "models", threads=1, precision="fp32")
    img = read_image(REPO / "examples" / "astronaut.jpg")
    (up,) = Landmarker(pair, create_detector("auto"), workers=1).predict_image(img).faces
    boxes = create_detector(no_detect=True)
    on = Landmarker(pair, boxes, workers=1)
    off = Landmarker(pair, boxes, workers=1, rescue=False)
    return img, up, on, off


@pytest.mark.parametrize("scale", [0.55, 2.4])
def test_a_badly_framed_face_is_read_again_and_lands_on_the_face(scale):
    """The astronaut from a face square 0.55x or 2.4x the size of its shape: stage 1 levelling from that crop alone
    reads her wrong (mean error above 10% of the eye distance, the failure line: 45-90% with the shipped files,
    quality < 0.2); read again, the points are within 3% of the eye distance of the detector-box prediction and the
    quality says they can be trusted. (The scales lie inside the failing ranges, not at their edges: at 0.6x and
    2.2x, the scales used before, some files and CPUs read her right without the second reading, or wrong with a
    quality above 0.2.)"""
    img, up, on, off = _astronaut()
    lo, hi = up.landmarks.min(0), up.landmarks.max(0)
    c, h = (lo + hi) / 2, (hi - lo).max() * scale / 2
    box = np.array([[c[0] - h, c[1] - h, c[0] + h, c[1] + h]])
    iod = np.linalg.norm(up.landmarks[36] - up.landmarks[45])
    (bad,) = off.predict_boxes(img, box)
    assert bad.quality < RESCUE_QUALITY
    # stage 1's levelled reading (what the quality scores and the second reading redoes) is off the face; stage 2
    # may still bring the final points back from some of these (H5 does from 2.4x), so they are not asserted
    assert np.linalg.norm(bad.stage1 - up.stage1, axis=1).mean() > 0.1 * iod
    (good,) = on.predict_boxes(img, box)
    assert np.linalg.norm(good.landmarks - up.landmarks, axis=1).mean() < 0.03 * iod
    assert good.quality > 0.5


def test_faces_read_well_are_not_touched():
    """A well-framed face (quality above the threshold) gets the same points with and without step 2c."""
    img, up, on, off = _astronaut()
    lo, hi = up.landmarks.min(0), up.landmarks.max(0)
    c, h = (lo + hi) / 2, (hi - lo).max() * 0.6
    box = np.array([[c[0] - h, c[1] - h, c[0] + h, c[1] + h]])
    (a,) = off.predict_boxes(img, box)
    (b,) = on.predict_boxes(img, box)
    assert a.quality >= RESCUE_QUALITY
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    assert a.quality == b.quality


@pytest.mark.parametrize("quality,read_again", [(0.35, True), (0.49, True), (0.55, False)])
def test_a_reading_more_likely_wrong_than_right_is_read_again(monkeypatch, quality, read_again):
    """The threshold is 0.5 of the quality (an estimate of P(NME <= 10%)): a face whose levelled reading scores
    0.35 or 0.49 is read again, one at 0.55 is not (the astronaut from the detector, its quality forced)."""
    from facelm.detectors import create_detector
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models, pipeline

    img = read_image(REPO / "examples" / "astronaut.jpg")
    pair = load_models(REPO / "models", threads=1, precision="fp32")
    lm = Landmarker(pair, create_detector("auto"), workers=1)
    monkeypatch.setattr(pipeline, "qualities", lambda spread, err: np.full(len(spread), quality))
    lm.predict_image(img)
    assert (lm.stats["reread"] == 1) is read_again, lm.stats["reread"]


def test_cli_and_api_take_the_option():
    import facelm

    assert facelm.Landmarker(rescue=False, threads=1).pipeline.rescue is False
    assert facelm.Landmarker(threads=1).pipeline.rescue is True
    r = CliRunner().invoke(app, ["predict", str(REPO / "examples" / "astronaut.jpg"), "--no-rescue", "-q",
                                 "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert '"landmarks"' in r.stdout


def test_predict_says_how_many_faces_it_read_again(tmp_path):
    """The run's summary on stderr counts the doubtful faces (one here: a given square 0.6x the face); with
    --no-rescue, or when every face is read well, it says nothing about it."""
    import json

    import cv2

    img, up, _, _ = _astronaut()
    cv2.imwrite(str(tmp_path / "a.png"), img[:, :, ::-1])
    lo, hi = up.landmarks.min(0), up.landmarks.max(0)
    c, h = (lo + hi) / 2, (hi - lo).max() * 0.3
    (tmp_path / "boxes.json").write_text(json.dumps({str(tmp_path / "a.png"): [[c[0] - h, c[1] - h, c[0] + h,
                                                                               c[1] + h]]}))
    args = ["predict", str(tmp_path / "a.png"), "--boxes", str(tmp_path / "boxes.json"), "--boxes-kind", "square",
            "--threads", "1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.stderr
    assert "1 faces (1 read again" in r.stderr
    r = CliRunner().invoke(app, [*args, "--no-rescue"])
    assert r.exit_code == 0 and "read again" not in r.stderr
    r = CliRunner().invoke(app, ["predict", str(tmp_path / "a.png"), "--threads", "1"])
    assert r.exit_code == 0 and "read again" not in r.stderr
