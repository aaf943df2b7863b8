"""Head pose (facelm/headpose.py): exact on synthetic projections of the generic face, roll = the in-plane turn of
a real photo, yaw ordered like MTFL's human pose labels on held-out faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared
from facelm.headpose import (FACE3D_68, MODEL_3D, PITCH_ZERO, POSE_POINTS, camera_matrix, head_pose, pose_axes,
                             rotation_matrix)

REPO = Path(__file__).resolve().parents[1]
MODEL = MODEL_3D


def _project(yaw, pitch, roll, t=(30.0, -20.0, 700.0), size=(640, 480)) -> np.ndarray:
    r = rotation_matrix(yaw, pitch, roll)
    pts, _ = cv2.projectPoints(MODEL @ r.T + np.asarray(t), np.zeros(3), np.zeros(3), camera_matrix(*size), None)
    return pts.reshape(68, 2)


def test_the_generic_face_is_symmetric_and_faces_the_camera():
    from facelm.schemes import get_scheme

    perm = list(get_scheme("300w68").flip_perm)
    face = np.asarray(FACE3D_68)
    assert np.allclose(face[perm] * [-1, 1, 1], face, atol=0.11)
    assert face[30, 2] == face[:, 2].min()  # the nose tip is nearest the camera
    assert abs(np.linalg.norm(face[36] - face[45]) - 90.0) < 0.2  # millimetres, the biocular width
    assert face[8, 1] > face[57, 1] > face[33, 1] > face[39, 1] > face[19, 1]  # y points down the face
    # the fitted model is FACE3D_68 turned about x by PITCH_ZERO: the unturned face seen straight on reads as
    # pitch -PITCH_ZERO
    pts, _ = cv2.projectPoints(face + [0, 0, 700.0], np.zeros(3), np.zeros(3), camera_matrix(640, 480), None)
    assert head_pose(pts.reshape(68, 2), 640, 480)["pitch"] == pytest.approx(-PITCH_ZERO, abs=0.05)


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (35, 0, 0), (-50, 10, 5), (20, -25, 170), (60, 20, -90),
                                            (-10, 5, -135)])
def test_recovers_the_angles_of_a_projected_face(yaw, pitch, roll):
    got = head_pose(_project(yaw, pitch, roll), 640, 480)
    assert got == pytest.approx({"yaw": yaw, "pitch": pitch, "roll": roll}, abs=0.05)


def test_sign_conventions_in_the_image():
    front = _project(0, 0, 0)
    assert _project(30, 0, 0)[30, 0] > front[30, 0]  # yaw > 0: the nose moves to the image right
    assert _project(0, 20, 0)[30, 1] < front[30, 1]  # pitch > 0: the nose moves up
    rolled = _project(0, 0, 20)
    assert rolled[45, 1] > rolled[36, 1]  # roll > 0: the image-right eye is lower (predict's `angle` sign)


def test_noisy_points_still_give_the_pose_within_a_few_degrees():
    rng = np.random.default_rng(0)
    errs = []
    for _ in range(50):
        truth = rng.uniform([-60, -30, -180], [60, 30, 180])
        pts = _project(*truth) + rng.normal(0, 1.0, (68, 2))  # 1 px noise on a face about 120 px wide
        got = head_pose(pts, 640, 480)
        d = np.array([got["yaw"], got["pitch"], got["roll"]]) - truth
        d[2] = (d[2] + 180) % 360 - 180
        errs.append(np.abs(d))
    errs = np.array(errs)
    assert np.median(errs, axis=0).max() < 2.5 and errs.max() < 12


def test_bad_input_and_the_drawn_axes():
    with pytest.raises(ValueError, match="68"):
        head_pose(np.zeros((5, 2)), 80, 80)
    pts = _project(0, 0, 0)
    nan = pts.copy()
    nan[list(POSE_POINTS)[5:]] = np.nan
    assert head_pose(nan, 640, 480) is None  # fewer than 6 usable points
    assert head_pose(np.full((68, 2), 50.0), 143, 143) is None  # all on one spot (SQPnP would raise): no pose
    axes = pose_axes(pts, head_pose(pts, 640, 480), 640, 480)
    assert np.allclose(axes[0], pts[30], atol=0.5)  # the axes start at the nose tip
    assert axes[1, 0] > axes[0, 0] and axes[2, 1] > axes[0, 1]  # x to the right, y down for a frontal face


@pytest.mark.parametrize("turn", [30, 90, 180, -60])
def test_roll_follows_the_in_plane_turn_of_a_real_photo(turn):
    """The astronaut turned by ``turn`` degrees (default pipeline with the shipped models): roll changes by the
    turn (within 3 degrees), yaw and pitch stay within 3 degrees."""
    from facelm.detectors import create_detector
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models

    lm = Landmarker(load_models(REPO / "models", threads=1), create_detector("auto"), workers=1)
    img = read_image(REPO / "examples" / "astronaut.jpg")
    h, w = img.shape[:2]
    (up,) = lm.predict_image(img).faces
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), turn, 1.0)
    faces = lm.predict_image(cv2.warpAffine(img, m, (w, h))).faces
    assert faces
    f = max(faces, key=lambda g: g.score)
    expect = up.pose["roll"] - turn  # cv2 turns counter-clockwise: the face's roll decreases by `turn`
    assert abs((f.pose["roll"] - expect + 180) % 360 - 180) < 3.0
    assert abs(f.pose["yaw"] - up.pose["yaw"]) < 3.0 and abs(f.pose["pitch"] - up.pose["pitch"]) < 3.0


def _mtfl_val_faces(per_label: int) -> list:
    """Held-out MTFL faces (the identities ``facelm prepare --holdout 0.1`` puts in val), up to ``per_label`` per
    pose label."""
    from facelm.datasets._base import RawFace
    from facelm.datasets.mtfl import read_mtfl
    from facelm.prepare import _holdout_fraction, default_group

    src = shared("mtfl-train", "training.txt")
    faces = [f for f in read_mtfl(src)
             if isinstance(f, RawFace) and _holdout_fraction(default_group(f.image)) < 0.1]
    out: dict[int, list] = {}
    for f in faces:
        out.setdefault(int(f.attrs["pose"]), []).append(f)
    return [f for k in sorted(out) for f in out[k][:per_label]]


def test_yaw_is_ordered_like_mtfl_pose_labels_on_held_out_faces():
    """MTFL's human pose labels (1 left profile ... 5 right profile) on held-out faces, default predict: the mean
    yaw per label is ordered, and the rank correlation is strong (docs/predict.md gives the full measurement)."""
    from scipy.stats import spearmanr

    from facelm.detectors import create_detector
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models

    lm = Landmarker(load_models(REPO / "models", threads=1), create_detector("auto"), workers=1)
    yaw, label = [], []
    for f in _mtfl_val_faces(per_label=25):
        faces = lm.predict_image(read_image(f.image)).faces
        centre = f.landmarks.mean(0)
        if faces:
            g = min(faces, key=lambda x: np.linalg.norm(x.landmarks.mean(0) - centre))
            yaw.append(g.pose["yaw"])
            label.append(int(f.attrs["pose"]))
    yaw, label = np.array(yaw), np.array(label)
    means = [yaw[label == k].mean() for k in range(1, 6)]
    assert all(a < b for a, b in zip(means, means[1:])), means  # MTFL's "left" = yaw < 0 (turned to image left)
    assert spearmanr(yaw, label).statistic > 0.6


def test_draw_shows_the_pose_axes_quality_and_track():
    from facelm.runtime.results import FaceResult, ImageResult, annotate

    pts = _project(20, 10, 5)
    img = np.zeros((480, 640, 3), np.uint8)
    face = FaceResult(box=np.r_[pts.min(0), pts.max(0)], score=0.9, angle=5.0, landmarks=pts, stage1=pts,
                      square=np.array([*pts.mean(0), 150.0]))
    plain = annotate(img, ImageResult("a.png", None, 640, 480, [face]))
    face.pose, face.quality, face.track = head_pose(pts, 640, 480), 0.97, 3
    drawn = annotate(img, ImageResult("a.png", 3, 640, 480, [face]))
    diff = np.abs(drawn.astype(int) - plain.astype(int)).sum(-1) > 0
    axes = pose_axes(pts, face.pose, 640, 480)
    end = np.round(axes[3]).astype(int)  # where the nose points: the blue axis ends there
    win = drawn[end[1] - 2:end[1] + 3, end[0] - 2:end[0] + 3].reshape(-1, 3)
    assert ((win[:, 0] > 150) & (win[:, 2] < 60)).any()  # BGR: blue
    assert diff[:int(face.box[1]), :].any()  # the label above the box changed (track, quality)
