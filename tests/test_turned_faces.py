"""Faces found only in the turned image (``facelm.runtime.orientation.find_turned_faces``, pipeline step 1b): the
geometry back to the image is exact, the pipeline uses the turned look only when nothing is found upright, and a
real infant photo that YuNet misses upright gets its landmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facelm.detectors.base import Detection, FaceDetector, box_iou

MODELS = Path(__file__).resolve().parents[1] / "models"


class MarkerDetector(FaceDetector):
    """Finds one 'face' in an image whose top-left pixel is pure red: a fixed box and five key points in that
    image's pixels; nothing otherwise."""

    name = "marker"
    live = True

    def __init__(self):
        self.looks: list[tuple[int, int]] = []

    def detect(self, image, name=None, frame=None):
        self.looks.append(image.shape[:2])
        if tuple(image[0, 0]) != (255, 0, 0):
            return []
        kp = np.array([[12.0, 9.0], [22.0, 9.0], [17.0, 14.0], [13.0, 20.0], [21.0, 20.0]])
        return [Detection(box=np.array([8.0, 4.0, 27.0, 26.0]), score=0.8, keypoints=kp)]


def _coded_image(w: int, h: int) -> np.ndarray:
    """Every pixel distinct (its index in the first two channels), so a pixel can be traced through the turns."""
    idx = np.arange(w * h).reshape(h, w)
    img = np.stack([idx // 256 % 256, idx % 256, np.zeros_like(idx)], -1).astype(np.uint8)
    return img


@pytest.mark.parametrize("corner, k", [((0, -1), 1), ((-1, -1), 2), ((-1, 0), 3)])
def test_turned_detections_map_back_to_the_same_pixels(corner, k):
    from facelm.runtime.orientation import find_turned_faces

    h, w = 40, 60  # not square: width and height swap in odd turns
    img = _coded_image(w, h)
    img[corner] = (255, 0, 0)  # the marker at the corner that np.rot90(img, k) brings to the top left
    det = MarkerDetector()
    (d,) = find_turned_faces(det, img)
    assert d.extra["turn_deg"] == 90 * k and len(det.looks) == 3  # found among the quarter turns: no diagonal looks
    rot = np.rot90(img, k)
    # every key point lands on the same pixel of the image as it marked in the turned look
    for (tx, ty), (x, y) in zip(d.extra["turned_keypoints"], d.keypoints):
        assert float(x).is_integer() and float(y).is_integer()
        assert (img[int(y), int(x)] == rot[int(ty), int(tx)]).all()
    # the box covers the same pixels: its corners are the turned box's corners mapped back
    tb = d.extra["turned_box"]
    inside_turned = {tuple(rot[y, x]) for y in range(int(tb[1]), int(tb[3]) + 1)
                     for x in range(int(tb[0]), int(tb[2]) + 1)}
    b = d.box
    inside = {tuple(img[y, x]) for y in range(int(b[1]), int(b[3]) + 1) for x in range(int(b[0]), int(b[2]) + 1)}
    assert inside == inside_turned


class SizeDetector(FaceDetector):
    """Finds one 'face' (fixed box and key points, its eye line tilted by atan(1/10)) only in images of one size."""

    name = "size"
    live = True

    def __init__(self, size: tuple[int, int]):
        self.size, self.looks = size, 0

    def detect(self, image, name=None, frame=None):
        self.looks += 1
        if image.shape[:2] != self.size:
            return []
        kp = np.array([[30.0, 20.0], [40.0, 21.0], [35.0, 26.0], [31.0, 31.0], [39.0, 31.0]])
        return [Detection(box=np.array([25.0, 12.0, 46.0, 38.0]), score=0.7, keypoints=kp)]


def test_diagonal_looks_only_when_the_quarter_turns_find_nothing_and_they_map_back():
    from facelm.detectors.boxmap import boxes_to_squares
    from facelm.geometry import apply_affine, eye_angle, turn_matrix
    from facelm.runtime.orientation import TURNED_LOOKS, find_turned_faces, turned_square

    h, w = 40, 60
    assert TURNED_LOOKS == ((90, 180, 270), (45, 135, 225, 315))
    m, (nw, nh) = turn_matrix(w, h, 135)
    det = SizeDetector((nh, nw))  # all four diagonal looks have this size: each finds the 'face' once
    found = find_turned_faces(det, np.zeros((h, w, 3), np.uint8))
    assert det.looks == 7 and {d.extra["turn_deg"] for d in found} <= {45, 135, 225, 315} and found
    boxes = np.stack([d.box for d in found])  # faces of different looks that overlap are merged (NMS)
    iou = box_iou(boxes, boxes)
    assert (iou[~np.eye(len(found), dtype=bool)] <= 0.3).all()
    box_map = {"cx": 0.0, "cy": 0.15, "side": 0.85}
    for d in found:
        m = d.extra["look_matrix"]
        assert np.allclose(m, turn_matrix(w, h, d.extra["turn_deg"])[0])
        assert np.allclose(apply_affine(m, d.keypoints), d.extra["turned_keypoints"])  # key points map back exactly
        # the box is the bounding box of the turned box's four corners mapped back
        tb = d.extra["turned_box"]
        back = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        tc = apply_affine(back, np.array([[tb[0], tb[1]], [tb[2], tb[1]], [tb[0], tb[3]], [tb[2], tb[3]]]))
        assert np.allclose(d.box, np.concatenate([tc.min(0), tc.max(0)]))
        sq, turn = turned_square(d, box_map)
        tsq = boxes_to_squares(tb[None], box_map)[0]
        assert np.allclose(apply_affine(m, sq[None, :2])[0], tsq[:2]) and sq[2] == pytest.approx(tsq[2])
        rest = eye_angle(d.extra["turned_keypoints"][0][None], d.extra["turned_keypoints"][1][None])[0]
        assert turn == pytest.approx((d.extra["turn_deg"] + rest + 180) % 360 - 180)
    det = SizeDetector((1, 1))  # nothing anywhere: 3 quarter and 4 diagonal looks, no face
    assert find_turned_faces(det, np.zeros((h, w, 3), np.uint8)) == [] and det.looks == 7


def test_turned_square_is_the_box_map_applied_upright_then_turned_back():
    from facelm.detectors.boxmap import boxes_to_squares
    from facelm.runtime.orientation import find_turned_faces, turned_square

    h, w = 40, 60
    img = _coded_image(w, h)
    img[0, -1] = (255, 0, 0)  # found after one counter-clockwise quarter turn
    (d,) = find_turned_faces(MarkerDetector(), img)
    box_map = {"cx": 0.1, "cy": 0.2, "side": 0.9}
    sq, turn = turned_square(d, box_map)
    tsq = boxes_to_squares(d.extra["turned_box"][None], box_map)[0]
    # np.rot90 by one: turned pixel (x', y') is image pixel (w - 1 - y', x')
    assert np.allclose(sq, [w - 1 - tsq[1], tsq[0], tsq[2]])
    # the face lies upright in a patch turned counter-clockwise once: in the image it is turned clockwise by 90
    # degrees (the key points' eye line is level in the turned look)
    assert turn == pytest.approx(90.0)
    # the square sits below the box centre in the upright look: in the image that is to the box's left
    assert sq[0] < (d.box[0] + d.box[2]) / 2


def test_no_turned_look_when_a_face_is_found_upright_or_when_switched_off():
    from facelm.runtime import Landmarker, load_models

    pair = load_models(MODELS, precision="fp32")
    img = _coded_image(96, 80)
    det = MarkerDetector()

    def whole_looks() -> int:  # looks at the whole image (upright or turned), not the orientation search's patches
        return sum(s in ((80, 96), (96, 80)) for s in det.looks)

    img[0, 0] = (255, 0, 0)  # found upright: one look only
    Landmarker(pair, det, tta="none").predict_image(img)
    assert whole_looks() == 1
    img[0, 0] = (0, 0, 0)
    img[0, -1] = (255, 0, 0)  # found only after a quarter turn
    det.looks.clear()
    faces = Landmarker(pair, det, tta="none").predict_image(img).faces
    assert whole_looks() == 4 and len(faces) == 1
    det.looks.clear()
    assert Landmarker(pair, det, tta="none", turn_search=False).predict_image(img).faces == []
    assert whole_looks() == 1
    det.looks.clear()
    assert Landmarker(pair, det, tta="none", level=False).predict_image(img).faces == []
    assert whole_looks() == 1


def test_an_infant_lying_on_its_side_that_yunet_misses_upright(shared_data):
    """InfAnFace's g-00050 (a held-out infant lying on its side, turned about 90 degrees): YuNet finds no face
    upright; with the turned look the default pipeline finds it, reports its angle within 15 degrees and its points
    within 10% of the outer-eye-corner distance of the hand-made ones (iBUG .pts next to the image)."""
    from facelm.datasets.pts import parse_pts
    from facelm.detectors import create_detector
    from facelm.geometry import eye_angle
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models

    path = shared_data("infanface-train", "google2", "g-00050.jpg")
    written, why = parse_pts(path.with_suffix(".pts"))
    assert why is None, why
    gt = written - 1.0  # .pts files are 1-based (facelm's reader does the same)
    img = read_image(path)
    det = create_detector("auto")
    assert det.detect(img) == []
    pair = load_models(MODELS)
    assert Landmarker(pair, det, turn_search=False).predict_image(img).faces == []
    (f,) = Landmarker(pair, det).predict_image(img).faces
    truth_angle = eye_angle(gt[36:42].mean(0)[None], gt[42:48].mean(0)[None])[0]
    assert abs((f.angle - truth_angle + 180) % 360 - 180) < 15
    iod = np.linalg.norm(gt[36] - gt[45])
    assert np.linalg.norm(f.landmarks - gt, axis=1).mean() < 0.1 * iod


def test_turned_looks_can_be_switched_off_in_the_api_and_the_cli(tmp_path, monkeypatch):
    """`facelm.Landmarker(turned_looks=False)` and `facelm predict --no-turned-looks` keep levelling but do not
    search an image with no face found upright turned (bounded time on faceless images)."""
    import json

    import cv2
    from typer.testing import CliRunner

    import facelm
    import facelm.detectors
    from facelm.cli import app

    img = _coded_image(96, 80)
    img[0, -1] = (255, 0, 0)  # found only after a quarter turn
    det = MarkerDetector()
    assert len(facelm.Landmarker(detector=det, precision="fp32", tta="none")(img)) == 1
    det.looks.clear()
    assert facelm.Landmarker(detector=det, precision="fp32", tta="none", turned_looks=False)(img) == []
    assert det.looks == [(80, 96)]

    path = tmp_path / "turned.png"
    cv2.imwrite(str(path), img[:, :, ::-1])
    monkeypatch.setattr(facelm.detectors, "create_detector", lambda *a, **k: MarkerDetector())
    found = {}
    for flag in ("--turned-looks", "--no-turned-looks"):
        r = CliRunner().invoke(app, ["predict", str(path), "--precision", "fp32", "--tta", "none", flag, "-q"])
        assert r.exit_code == 0, r.stderr
        found[flag] = len(json.loads(r.stdout.splitlines()[0])["faces"])
    assert found == {"--turned-looks": 1, "--no-turned-looks": 0}
