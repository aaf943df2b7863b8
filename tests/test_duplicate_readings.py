"""Second readings of a face (predict step 6, ``facelm.runtime.results.drop_duplicate_readings``): a weaker
detection beside a face whose points collapsed onto that face is dropped; real faces side by side, faces without
quality and given boxes are kept."""

from __future__ import annotations

import json

import numpy as np
from conftest import shared
from typer.testing import CliRunner

from facelm.cli import app
from facelm.runtime.results import DUPLICATE_OVERLAP, FaceResult, drop_duplicate_readings


def _face(centre, size, quality, score=0.9) -> FaceResult:
    rng = np.random.default_rng(int(size))
    pts = np.asarray(centre, float) + (rng.random((68, 2)) - 0.5) * size
    pts[0], pts[1] = np.asarray(centre) - size / 2, np.asarray(centre) + size / 2  # the box is exactly size wide
    return FaceResult(box=np.r_[pts.min(0), pts.max(0)], score=score, angle=0.0, landmarks=pts, stage1=pts,
                      square=np.r_[centre, size], quality=quality)


def test_a_collapsed_shape_inside_a_better_face_is_dropped_and_order_kept():
    big, small = _face((100, 100), 60, 0.99), _face((105, 95), 20, 0.01, score=0.7)
    other = _face((300, 100), 60, 0.5)
    assert drop_duplicate_readings([small, big, other]) == [big, other]
    # the better reading is kept whatever its size: a large, bad shape around a good small one goes
    assert drop_duplicate_readings([_face((100, 100), 22, 0.9), _face((100, 100), 24, 0.1)])[0].quality == 0.9


def test_faces_side_by_side_and_partly_overlapping_are_kept():
    a, b = _face((100, 100), 60, 0.9), _face((150, 100), 60, 0.2)  # b overlaps a by about 1/6 of its area
    assert drop_duplicate_readings([a, b]) == [a, b]
    # just under the overlap limit stays, at it goes
    side = 60.0
    shift = side * (1 - DUPLICATE_OVERLAP) * 1.05
    assert len(drop_duplicate_readings([a, _face((100 + shift, 100), side, 0.1)])) == 2
    assert len(drop_duplicate_readings([a, _face((100 + side * (1 - DUPLICATE_OVERLAP) * 0.9, 100), side, 0.1)])) == 1


def test_of_two_good_readings_of_one_face_the_better_detection_keeps_it():
    """Both readings trustworthy: the detector score decides, not a difference in the third decimal of quality
    (an MTFL photo where a weak edge detection's square covers the face and the second reading of doubtful faces
    reads it right, 0.999 against the real detection's 0.998, used to take the face and report the edge box)."""
    real, edge = _face((100, 100), 60, 0.998, score=0.95), _face((101, 99), 58, 0.999, score=0.65)
    assert drop_duplicate_readings([edge, real]) == [real]
    # an untrustworthy reading never wins by its detector score
    weak = _face((100, 100), 58, 0.3, score=0.99)
    assert drop_duplicate_readings([weak, real]) == [real]


def test_ties_fall_back_to_the_detector_score_and_single_faces_pass():
    a, b = _face((100, 100), 60, 0.5, score=0.9), _face((100, 100), 58, 0.5, score=0.6)
    assert drop_duplicate_readings([b, a]) == [a]
    assert drop_duplicate_readings([b]) == [b] and drop_duplicate_readings([]) == []


def test_predict_reports_one_face_where_a_second_detection_collapsed_onto_it(tmp_path):
    """An MTFL val photo (80 px) where YuNet also fires on a strip beside the face; that detection's points
    collapsed inside the real face (quality 0.0). With given boxes (--boxes), every box keeps its face."""
    img = shared("mtfl-train", "net_7876", "_0_1323_0.jpg")
    r = CliRunner().invoke(app, ["predict", str(img), "--precision", "fp32"])
    assert r.exit_code == 0, r.stderr
    faces = json.loads(r.stdout)["faces"]
    assert len(faces) == 1 and faces[0]["quality"] > 0.9
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({img.name: [[22.1, 8.7, 61.0, 62.8], [52.8, 28.5, 88.1, 75.0]]}))
    r = CliRunner().invoke(app, ["predict", str(img), "--boxes", str(boxes), "--precision", "fp32"])
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)["faces"]) == 2


def test_a_face_keeps_its_own_detection_when_a_weak_one_is_read_right_too():
    """An MTFL photo (80 px) where YuNet also fires at the left edge and that detection's face square covers the
    face: the second reading of doubtful faces reads it right (quality 0.999), and before the rank put trusted
    readings' detector score first, it took the face from the real detection (0.998) and reported the edge box."""
    img = shared("mtfl-train", "net_7876", "1378_1_0.jpg")
    r = CliRunner().invoke(app, ["predict", str(img), "--precision", "fp32"])
    assert r.exit_code == 0, r.stderr
    (face,) = json.loads(r.stdout)["faces"]
    x1, y1, x2, y2 = face["box"]
    cx, cy = np.mean(face["landmarks"], axis=0)
    assert x1 < cx < x2 and y1 < cy < y2 and x1 > 0, face["box"]
