"""The per-face quality score (facelm/runtime/quality.py): a documented monotone 0..1 map of the pipeline's
signals, low for an upside-down face nothing turned upright, ``--min-quality`` drops faces, and on held-out
human-labelled MTFL faces (not used to fit it) it ranks the faces with NME > 10% first."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import load_script, shared
from facelm.cli import app
from facelm.runtime.quality import CALIBRATION, quality_score

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.jpg"


def _calib():
    return load_script("quality_calibrate")


def test_the_score_is_a_monotone_map_to_0_1():
    grid = [1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.5]
    for level in (1e-3, 0.02, 0.3, math.nan):
        q = [quality_score({"mirror": m, "level": level}) for m in grid]
        assert all(0.0 <= v <= 1.0 for v in q)
        assert all(a >= b for a, b in zip(q, q[1:])) and q[0] > 0.99 and q[-1] < 0.01
    q = [quality_score({"mirror": 3e-3, "level": e}) for e in grid]
    assert all(a >= b for a, b in zip(q, q[1:])) and q[0] > q[-1]
    assert quality_score({"mirror": math.nan, "level": 0.01}) == 0.0
    # without levelling, the mirror-only fit
    c = CALIBRATION["no_level"]
    z = c["intercept"] + c["mirror"] * math.log(0.004)
    assert quality_score({"mirror": 0.004, "level": math.nan}) == pytest.approx(1 / (1 + math.exp(-z)))


def _turned(img: np.ndarray, turn: float):
    return _calib().turn_image(img, turn)


@pytest.fixture(scope="module")
def pipelines():
    from facelm.detectors import create_detector
    from facelm.detectors.boxmap import resolve_box_map
    from facelm.runtime import Landmarker, load_models

    pair = load_models(REPO / "models", threads=1)
    detect = Landmarker(pair, create_detector("auto"), workers=1)
    ymap, _ = resolve_box_map(pair.stage1.meta, "yunet")
    boxes = Landmarker(pair, create_detector(no_detect=True), workers=1, box_map=ymap)
    return detect, boxes


def test_an_upside_down_face_given_as_a_box_gets_a_low_quality(pipelines):
    """The astronaut turned 180 degrees, her YuNet box given without a live detector (as ``--boxes``) and without
    levelling (``level=False``): nothing turns the face upright, stage 1's points come out wrong (NME > 10%), and
    the quality (made of stage-1 signals) says so; upright, and turned 90 degrees with levelling (which turns it
    back), it is high. (The check runs stage 1 alone: the quality is conservative after the refiner. With
    levelling, today's stage 1 reads the 180-degree face itself nearly right, about 9% NME, so that case no longer
    gives wrong points to test with.)"""
    from facelm.detectors import create_detector
    from facelm.detectors.boxmap import resolve_box_map
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models

    detect, _ = pipelines
    one = load_models(REPO / "models", stages=1, threads=1)
    bm = resolve_box_map(one.stage1.meta, "yunet")[0]
    img = read_image(ASTRONAUT)
    (up,) = detect.predict_image(img).faces
    assert up.quality > 0.9
    iod = np.linalg.norm(up.landmarks[36] - up.landmarks[45])

    def given_box(turn: float, level: bool):
        rot, m = _turned(img, turn)
        corners = np.array([[up.box[0], up.box[1]], [up.box[2], up.box[3]]]) @ m[:, :2].T + m[:, 2]
        box = np.array([[*corners.min(0), *corners.max(0)]])
        lm = Landmarker(one, create_detector(no_detect=True), workers=1, box_map=bm, level=level)
        (f,) = lm.predict_boxes(rot, box, kind="detector")
        expect = up.landmarks @ m[:, :2].T + m[:, 2]
        return np.linalg.norm(f.landmarks - expect, axis=1).mean() / iod, f.quality

    # wrong points (NME above 10%, the quality's own line between good and bad) get a quality below one half
    nme, quality = given_box(180, level=False)
    assert nme > 0.1 and quality < 0.5
    nme, quality = given_box(90, level=True)
    assert nme < 0.05 and quality > 0.5


def test_min_quality_drops_the_untrustworthy_face(tmp_path):
    """A given box on the background (no face; no live detector to say so) still gets 68 confident points, with a
    low quality, and --min-quality drops it. (The upside-down astronaut from a given box, this test's case before
    the deeper default networks, is now read right: angle -176.5 deg, 1.2% of the eye distance from the upright
    reading turned, quality 0.89.)"""
    import cv2

    from facelm.imageio import read_image

    img = read_image(ASTRONAUT)
    cv2.imwrite(str(tmp_path / "up.png"), img[:, :, ::-1])
    (tmp_path / "boxes.json").write_text(json.dumps({str(tmp_path / "up.png"): [[380, 380, 505, 505]]}))
    args = ["predict", str(tmp_path / "up.png"), "--boxes", str(tmp_path / "boxes.json"), "--boxes-kind",
            "detector", "-q", "--threads", "1"]
    kept = CliRunner().invoke(app, args)
    assert kept.exit_code == 0, kept.stderr
    (face,) = json.loads(kept.stdout)["faces"]
    assert face["quality"] < 0.5
    dropped = CliRunner().invoke(app, [*args, "--min-quality", "0.5"])
    assert dropped.exit_code == 0 and json.loads(dropped.stdout)["faces"] == []
    up = CliRunner().invoke(app, ["predict", str(tmp_path / "up.png"), "-q", "--threads", "1", "--min-quality", "0.5"])
    assert len(json.loads(up.stdout)["faces"]) == 1  # the real face is kept
    for bad in ("-0.1", "1.5", "nan"):
        r = CliRunner().invoke(app, ["predict", str(tmp_path / "up.png"), "--min-quality", bad])
        assert r.exit_code == 2 and "--min-quality" in r.stderr


#: AUC of the quality for NME > 10% on the held-out MTFL faces below (measured 0.992 on this subset: 200 faces, 105
#: with NME > 10%; on all 1028 val faces x 4 turns x 2 ways 0.948, docs/predict.md)
MIN_AUC_MTFL = 0.9


def test_quality_ranks_bad_predictions_first_on_held_out_mtfl_faces(pipelines):
    """MTFL val identities (held out of training, and not used to fit the quality), human labels, 5 points through
    the 68 -> 5 map, inter-ocular NME: the first 100 faces upright with the detector (default predict) and turned
    180 degrees with their box given (as ``--boxes``); the quality's AUC for telling NME > 10% is above
    MIN_AUC_MTFL."""
    from facelm.datasets._base import RawFace
    from facelm.datasets.mtfl import read_mtfl
    from facelm.imageio import read_image
    from facelm.prepare import _holdout_fraction, default_group

    cal = _calib()
    detect, boxes = pipelines
    src = shared("mtfl-train", "training.txt")
    faces = [f for f in read_mtfl(src)
             if isinstance(f, RawFace) and _holdout_fraction(default_group(f.image)) < 0.1][:100]
    q, nme = [], []
    for f in faces:
        img = read_image(f.image)
        up = detect.predict_image(img).faces
        if not up:
            continue
        g = min(up, key=lambda x: np.linalg.norm(x.landmarks.mean(0) - f.landmarks.mean(0)))
        q.append(g.quality)
        nme.append(cal._nme(g.landmarks, f.landmarks, "5pt"))
        rot, m = _turned(img, 180)
        corners = np.array([g.box[:2], g.box[2:]]) @ m[:, :2].T + m[:, 2]
        (h,) = boxes.predict_boxes(rot, np.array([[*corners.min(0), *corners.max(0)]]), kind="detector")
        q.append(h.quality)
        nme.append(cal._nme(h.landmarks, f.landmarks @ m[:, :2].T + m[:, 2], "5pt"))
    q, bad = np.array(q), np.array(nme) > 0.1
    assert len(q) > 180 and 20 < bad.sum() < len(q) - 20
    auc = cal.auc_bad_first(q, bad)
    print(f"MTFL held-out: {len(q)} faces, {int(bad.sum())} with NME > 10%, quality AUC {auc:.3f}")
    assert auc > MIN_AUC_MTFL, auc


@pytest.mark.parametrize("tta,level", [("none", True), ("flip", False), ("none", False)])
def test_quality_without_flip_tta_or_levelling(tta, level):
    """``--tta none`` runs the mirror pass for the score alone (the landmarks stay the plain pass's);
    ``--no-level`` uses the mirror-only fit."""
    from facelm.detectors import create_detector
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models

    pair = load_models(REPO / "models", threads=1)
    lm = Landmarker(pair, create_detector("auto"), workers=1, tta=tta, level=level)
    (f,) = lm.predict_image(read_image(ASTRONAUT)).faces
    assert f.quality > 0.8 and f.signals["mirror"] < 0.02
    assert math.isnan(f.signals["level"]) == (not level)
    if tta == "none":  # the same landmarks as a run that does not compute the quality's mirror pass
        plain = Landmarker(pair, create_detector("auto"), workers=1, tta="none", level=level)
        img = read_image(ASTRONAUT)
        crops = np.stack([plain._faces(img, plain.detector.detect(img))[0].crop1])
        assert np.array_equal(plain._run(plain.s1, crops), plain._run(plain.s1, crops, []))
