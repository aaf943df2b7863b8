"""Face detectors: YuNet decoding on a real face, the model search and offline download path, boxes files,
--no-detect, and the detector-box -> training-face-square map (fit, store in the ONNX metadata, use)."""

from __future__ import annotations

import hashlib
import json
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from facelm.detectors import (
    BoxesFileDetector,
    BoxLookupError,
    Detection,
    DetectorUnavailable,
    FaceDetector,
    WholeImageDetector,
    box_iou,
    create_detector,
    nms,
)
from facelm.detectors import yunet as Y
from facelm.detectors.base import detect_with_retries, downscale_for_detection
from facelm.detectors.boxmap import (
    DEFAULT_BOX_MAP,
    boxes_to_squares,
    fit_box_map,
    fit_from_pairs,
    get_box_map,
    square_to_box,
    write_box_map,
)
from facelm.errors import DataError, ModelError
from facelm.export import read_onnx_meta, set_onnx_meta
from facelm.geometry import landmark_square
from facelm.schemes import get_scheme

REPO = Path(__file__).resolve().parents[1]
YUNET = REPO.parent / "shared" / "models" / "yunet_s_dynamic.onnx"
YTF = REPO.parent / "shared" / "data" / "ytf68-train"


def _ytf_face(name: str = "Adam_Sandler_00.jpg") -> tuple[np.ndarray, np.ndarray]:
    import csv

    from facelm.imageio import read_image

    if not (YTF / name).is_file():
        pytest.skip("shared data not available")
    with open(YTF / "training_frames_keypoints.csv", newline="") as f:
        row = next(r for r in csv.reader(f) if r and r[0] == name)
    return read_image(YTF / name), np.array(row[1:], dtype=float).reshape(-1, 2)


def _sq_box(lm: np.ndarray, scale: float = 1.0) -> np.ndarray:
    c, s = landmark_square(lm, scale)
    return square_to_box(np.array([[c[0], c[1], s]]))[0]


needs_yunet = pytest.mark.skipif(not YUNET.is_file(), reason="../shared/models/yunet_s_dynamic.onnx not available")


# ------------------------------------------------------------------------------------------------------------
# box helpers


def test_iou_and_nms_golden():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0])
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7]), 0.3)
    assert keep.tolist() == [0, 2]
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.3, top_k=1).tolist() == [0]


def test_downscale_for_detection_maps_back():
    img = np.zeros((2000, 1000, 3), np.uint8)
    small, f = downscale_for_detection(img, 1280)
    assert max(small.shape[:2]) == 1280 and f == pytest.approx(0.64)
    same, f1 = downscale_for_detection(img[:100, :100], 1280)
    assert f1 == 1.0 and same.shape == (100, 100, 3)


def test_detect_with_retries_looks_at_smaller_sizes_and_merges_them():
    seen = []
    whole = Detection(box=np.array([100.0, 100.0, 900.0, 900.0]), score=0.9)  # the face, found whole at 1/2 size
    part = Detection(box=np.array([400.0, 150.0, 880.0, 700.0]), score=0.6)  # a weak box on part of it, full size
    other = Detection(box=np.array([930.0, 300.0, 970.0, 340.0]), score=0.7)  # a small face elsewhere, full size
    again = Detection(box=np.array([105.0, 95.0, 905.0, 890.0]), score=0.8)  # the face once more, at 1/4 size

    def detect_at(small, f):
        seen.append((small.shape[:2], f))
        return {1000: [part, other], 500: [whole], 250: [again]}.get(small.shape[0], [])

    found = detect_with_retries(detect_at, np.zeros((1000, 1000, 3), np.uint8), min_retry_side=160)
    assert [s for s, _ in seen] == [(1000, 1000), (500, 500), (250, 250)]  # 125 < 160: no fourth size
    assert [f for _, f in seen] == pytest.approx([1.0, 0.5, 0.25])
    assert found == [whole, other]  # best first; the part inside the face and the repeat are dropped
    # off: the first size only
    seen.clear()
    assert detect_with_retries(detect_at, np.zeros((1000, 1000, 3), np.uint8), min_retry_side=0) == [part, other]
    assert len(seen) == 1
    # a small image: nothing else to look at (nothing found: one more look inside a border, 250 + 2 x 62);
    # an image over max_side is shrunk first
    seen.clear()
    detect_with_retries(detect_at, np.zeros((250, 250, 3), np.uint8), min_retry_side=160)
    assert [s for s, _ in seen] == [(250, 250), (374, 374)]
    seen.clear()
    detect_with_retries(detect_at, np.zeros((2000, 2560, 3), np.uint8), max_side=1280, min_retry_side=160)
    assert [s for s, _ in seen] == [(1000, 1280), (500, 640), (250, 320)]
    assert [f for _, f in seen] == pytest.approx([0.5, 0.25, 0.125])


def test_detect_with_retries_looks_again_inside_a_border_for_a_face_at_the_edge():
    # a 300 x 400 face crop: the first look's box stops at the top edge; inside a black border of 0.25 x 400 = 100 px
    # the detector sees the whole head (its box in the framed image's pixels); the framed box wins, shifted back
    cut = Detection(box=np.array([50.0, 0.0, 350.0, 280.0]), score=0.95, keypoints=np.zeros((5, 2)))
    head = Detection(box=np.array([145.0, 60.0, 455.0, 385.0]), score=0.9, keypoints=np.full((5, 2), 200.0))
    elsewhere = Detection(box=np.array([10.0, 10.0, 40.0, 40.0]), score=0.7)
    shapes = []

    def detect_at(small, f):
        shapes.append(small.shape[:2])
        return {(300, 400): [cut], (500, 600): [head, elsewhere]}[small.shape[:2]]

    found = detect_with_retries(detect_at, np.zeros((300, 400, 3), np.uint8), min_retry_side=160)
    assert shapes == [(300, 400), (500, 600)]
    np.testing.assert_allclose(found[0].box, [45, -40, 355, 285])
    np.testing.assert_allclose(found[0].keypoints, np.full((5, 2), 100.0))
    np.testing.assert_allclose(found[1].box, [-90, -90, -60, -60])  # a face the border let it see, merged in
    # a face away from the edges: no second look
    inner = Detection(box=np.array([100.0, 80.0, 300.0, 220.0]), score=0.9)
    shapes.clear()
    assert detect_with_retries(lambda s, f: shapes.append(1) or [inner], np.zeros((300, 400, 3), np.uint8)) == [inner]
    assert shapes == [1]
    # nothing found: the framed look runs; pad=0 turns it off
    shapes.clear()
    detect_with_retries(lambda s, f: shapes.append(s.shape[:2]) or [], np.zeros((300, 400, 3), np.uint8))
    assert shapes == [(300, 400), (500, 600)]
    shapes.clear()
    detect_with_retries(lambda s, f: shapes.append(s.shape[:2]) or [], np.zeros((300, 400, 3), np.uint8), pad=0)
    assert shapes == [(300, 400)]


def test_yunet_finds_a_close_up_face_at_a_smaller_size():
    """A face filling a 1200 px frame is bigger than YuNet's largest anchors: at the first size only it is missed
    or found as a weak box on part of it; with the smaller sizes the face comes back, its box in the close-up's pixels where the photo's box maps
    to."""
    from facelm.imageio import read_image

    det = Y.YuNetDetector(REPO / "models" / "detectors" / "yunet_s_dynamic.onnx")
    img = read_image(REPO / "examples" / "astronaut.jpg")
    ref = max(det.detect(img), key=lambda d: d.score)
    c, side = (ref.box[:2] + ref.box[2:]) / 2, 1200
    s = side / ((ref.box[2:] - ref.box[:2]).max() * 1.1)
    m = np.array([[s, 0, side / 2 - c[0] * s], [0, s, side / 2 - c[1] * s]])
    close = cv2.warpAffine(img, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    want = np.concatenate([ref.box[:2] * s + m[:, 2], ref.box[2:] * s + m[:, 2]])
    det.min_retry_side = 0  # nothing, or a weak box on part of the face
    first = det.detect(close)
    assert not first or box_iou(want[None], np.stack([d.box for d in first]))[0].max() < 0.5
    det.min_retry_side = 160
    found = det.detect(close)
    assert found
    assert box_iou(want[None], np.stack([d.box for d in found]))[0].max() > 0.6
    best = max(found, key=lambda d: d.score)
    np.testing.assert_allclose(best.keypoints, ref.keypoints * s + m[:, 2], atol=0.08 * (want[2] - want[0]))


# ------------------------------------------------------------------------------------------------------------
# YuNet


@needs_yunet
def test_yunet_finds_the_annotated_face_and_its_eyes():
    img, lm = _ytf_face()
    det = Y.YuNetDetector(YUNET)
    dets = det.detect(img)
    assert dets and all(0.6 <= d.score <= 1 for d in dets)
    gt = _sq_box(lm)
    ious = box_iou(gt[None], np.stack([d.box for d in dets]))[0]
    best = dets[int(np.argmax(ious))]
    assert ious.max() > 0.45
    # YuNet key points: image-left eye first; compare with the 300W eye centres
    side = gt[2] - gt[0]
    eyes = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])
    assert np.linalg.norm(best.keypoints[:2] - eyes, axis=1).max() < 0.12 * side


@needs_yunet
def test_yunet_on_a_huge_image_detects_on_a_downscaled_copy():
    img, lm = _ytf_face()
    big = cv2.resize(img, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)  # 1404 x 1506 > 1280
    det = Y.YuNetDetector(YUNET)
    seen = []
    raw = det.raw
    det.raw = lambda bgr: seen.append(bgr.shape) or raw(bgr)
    large = det.detect(big)
    assert max(seen[0][:2]) == 1280  # the detector ran on a shrunk copy
    gt = _sq_box(lm * 6 + 2.5)
    ious = box_iou(gt[None], np.stack([d.box for d in large]))[0]
    assert ious.max() > 0.45  # boxes and key points are in the big image's pixels
    best = large[int(np.argmax(ious))]
    eyes = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)]) * 6 + 2.5
    assert np.linalg.norm(best.keypoints[:2] - eyes, axis=1).max() < 0.12 * (gt[2] - gt[0])


def _no_bundle(monkeypatch, tmp_path):
    """A clean slate: an empty cache, no $FACELM_DETECTOR_MODEL, and an install without the bundled detector."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(Y.ENV_MODEL, raising=False)
    monkeypatch.setattr(Y, "bundled_detector_dir", lambda: tmp_path / "no-bundle")


def test_the_bundled_detector_ships_byte_for_byte_with_its_licence_and_notice():
    d = Y.bundled_detector_dir()
    assert d == REPO / "models" / "detectors"
    f = d / Y.YUNET_FILE
    assert hashlib.sha256(f.read_bytes()).hexdigest() == Y.YUNET_SHA256 == Y.DETECTOR_FILES[Y.YUNET_FILE][1]
    assert f.stat().st_size == 237_823
    if YUNET.is_file():
        assert f.read_bytes() == YUNET.read_bytes()
    licence = (d / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence and "Shiqi Yu" in licence
    notice = (d / "NOTICE").read_text()
    assert "libfacedetection.train" in notice and Y.YUNET_COMMIT in notice and Y.YUNET_SHA256 in notice


def test_model_search_order(tmp_path, monkeypatch):
    """explicit (--detector-model, then $FACELM_DETECTOR_MODEL) > the bundled file > the cache > None (download)."""
    _no_bundle(monkeypatch, tmp_path)
    good = (REPO / "models" / "detectors" / Y.YUNET_FILE).read_bytes()
    assert Y.find_yunet_model() is None and Y.requested_file() == Y.YUNET_FILE
    cached = tmp_path / "cache" / "facelm" / Y.YUNET_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(good)
    assert Y.find_yunet_model() == cached
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / Y.YUNET_FILE).write_bytes(good)
    monkeypatch.setattr(Y, "bundled_detector_dir", lambda: bundle)
    assert Y.find_yunet_model() == bundle / Y.YUNET_FILE  # the bundled file wins over the cache
    env = tmp_path / "env.onnx"
    env.write_bytes(b"x")  # explicit files are the user's: used as they are, no checksum
    monkeypatch.setenv(Y.ENV_MODEL, str(env))
    assert Y.find_yunet_model() == env
    explicit = tmp_path / "explicit.onnx"
    explicit.write_bytes(b"x")
    assert Y.find_yunet_model(explicit) == explicit
    with pytest.raises(DetectorUnavailable, match="no such file"):
        Y.find_yunet_model(tmp_path / "missing.onnx")
    monkeypatch.setenv(Y.ENV_MODEL, str(tmp_path / "gone.onnx"))
    with pytest.raises(DetectorUnavailable, match=Y.ENV_MODEL):
        Y.find_yunet_model()


def test_a_known_name_is_looked_up_in_the_cache_then_downloaded(tmp_path, monkeypatch):
    _no_bundle(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert Y.find_yunet_model("yunet_n_dynamic.onnx") is None  # not here: download that one
    assert Y.requested_file("yunet_n_dynamic.onnx") == "yunet_n_dynamic.onnx"
    monkeypatch.setenv(Y.ENV_MODEL, "yunet_s_640x640.onnx")
    assert Y.find_yunet_model() is None and Y.requested_file() == "yunet_s_640x640.onnx"
    monkeypatch.delenv(Y.ENV_MODEL)
    # a fetched file is checked against its own checksum, then found in the cache next time (no network)
    good = (REPO / "models" / "detectors" / Y.YUNET_FILE).read_bytes()
    monkeypatch.setitem(Y.DETECTOR_FILES, "yunet_test.onnx", ("onnx/yunet_test.onnx",
                                                             hashlib.sha256(good).hexdigest()))
    urls = []
    monkeypatch.setattr(Y, "_fetch", lambda url, timeout: urls.append(url) or good)
    monkeypatch.setattr("facelm.detectors.yuface_available", lambda: True)  # asked-for file: never yuface
    det = create_detector("auto", model="yunet_test.onnx")
    assert isinstance(det, Y.YuNetDetector) and det.model == tmp_path / "cache" / "facelm" / "yunet_test.onnx"
    assert urls == [Y._UPSTREAM + "onnx/yunet_test.onnx"] and Y.YUNET_COMMIT in urls[0]
    monkeypatch.setattr(Y, "_fetch", lambda url, timeout: pytest.fail("downloaded twice"))
    assert Y.find_yunet_model("yunet_test.onnx") == det.model
    # the other files' downloads keep their checksums
    monkeypatch.setattr(Y, "_fetch", lambda url, timeout: b"tampered")
    with pytest.raises(DetectorUnavailable, match="checksum mismatch.*" + Y.DETECTOR_FILES["yunet_n_dynamic.onnx"][1]):
        create_detector("yunet", model="yunet_n_dynamic.onnx")


@pytest.mark.parametrize("where", ["bundled", "cache"])
def test_a_checksum_mismatch_is_one_line_naming_the_file(tmp_path, monkeypatch, where):
    _no_bundle(monkeypatch, tmp_path)
    folder = tmp_path / "bundle" if where == "bundled" else tmp_path / "cache" / "facelm"
    folder.mkdir(parents=True)
    bad = folder / Y.YUNET_FILE
    bad.write_bytes((REPO / "models" / "detectors" / Y.YUNET_FILE).read_bytes()[:-10])  # truncated
    if where == "bundled":
        monkeypatch.setattr(Y, "bundled_detector_dir", lambda: folder)
    monkeypatch.setattr(Y, "_fetch", lambda url, timeout: pytest.fail("must not download over a corrupt file"))
    with pytest.raises(DetectorUnavailable) as e:
        create_detector("auto")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{bad}: sha256 ") and Y.YUNET_SHA256 in msg
    assert ("reinstall facelm" if where == "bundled" else "delete it") in msg and e.value.code == 4


def test_predict_help_names_the_file_it_will_use(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("FACELM_")}
    env.update(COLUMNS="200", XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-m", "facelm", "predict", "--help"], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    flat = " ".join(r.stdout.split())
    assert f"the bundled {REPO / 'models' / 'detectors' / Y.YUNET_FILE}" in flat, flat[-800:]
    r = subprocess.run([sys.executable, "-m", "facelm", "predict", "--help"], capture_output=True, text=True,
                       env={**env, Y.ENV_MODEL: "mine.onnx"}, cwd=tmp_path, timeout=120, check=False)
    assert f"${Y.ENV_MODEL} = mine.onnx" in " ".join(r.stdout.split())


def _offline(monkeypatch, tmp_path):
    _no_bundle(monkeypatch, tmp_path)
    monkeypatch.setattr("facelm.detectors.yuface_available", lambda: False)

    def no_net(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(Y, "_fetch", no_net)


def test_offline_message_says_what_to_do(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path)
    with pytest.raises(DetectorUnavailable) as e:
        create_detector("auto")
    msg = str(e.value)
    assert "`detector_model`" in msg and str(tmp_path / "cache" / "facelm" / Y.YUNET_FILE) in msg
    assert Y.YUNET_SHA256 in msg and "name resolution" in msg and "`no_detect`" in msg
    from facelm.cli._common import cli_message  # the CLI shows its flags

    assert "--detector-model PATH" in cli_message(msg) and "--no-detect" in cli_message(msg)
    assert e.value.code == 4
    assert not (tmp_path / "cache" / "facelm" / Y.YUNET_FILE).exists()


def test_download_checks_the_sha256_and_writes_atomically(tmp_path, monkeypatch):
    payload = b"pretend onnx bytes"
    monkeypatch.setattr(Y, "_fetch", lambda url, timeout: payload)
    with pytest.raises(DetectorUnavailable, match="checksum mismatch"):
        Y.download_yunet(tmp_path)
    assert list(tmp_path.iterdir()) == []
    good = Y.download_yunet(tmp_path, sha256=hashlib.sha256(payload).hexdigest())
    assert good.read_bytes() == payload and good.name == Y.YUNET_FILE
    assert [p.name for p in tmp_path.iterdir()] == [Y.YUNET_FILE]  # no temporary files left


@needs_yunet
def test_a_file_that_is_not_yunet_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="not a loadable ONNX"):
        Y.YuNetDetector(bad)


def test_yuface_when_installed():
    if not Y.yuface_available():
        pytest.skip("yuface is not installed")
    img, lm = _ytf_face()
    dets = Y.YuFaceDetector().detect(img)
    assert dets and box_iou(_sq_box(lm)[None], np.stack([d.box for d in dets]))[0].max() > 0.4


# ------------------------------------------------------------------------------------------------------------
# boxes files and --no-detect


def test_boxes_files_in_every_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    img = np.zeros((50, 60, 3), np.uint8)
    j = tmp_path / "b.json"
    j.write_text(json.dumps({"imgs/a.jpg": [[1, 2, 30, 40], [5, 5, 9, 9, 0.5]], "imgs/empty.jpg": []}))
    d = BoxesFileDetector(j)
    faces = d.detect(img, "imgs/a.jpg")
    assert [f.box.tolist() for f in faces] == [[1, 2, 30, 40], [5, 5, 9, 9]]
    assert [f.score for f in faces] == [1.0, 0.5] and faces[0].kind == "face-square"
    assert d.detect(img, str(tmp_path / "imgs" / "a.jpg"))  # absolute path of the same file
    assert d.detect(img, "imgs/empty.jpg") == []
    with pytest.raises(BoxLookupError, match="no boxes"):
        d.detect(img, "imgs/other.jpg")
    # JSONL as written by `facelm predict` (video frames by number)
    jl = tmp_path / "pred.jsonl"
    jl.write_text(json.dumps({"image": "imgs/a.jpg", "faces": [{"box": [1, 2, 3, 4], "score": 0.9}]}) + "\n"
                  + json.dumps({"image": "v.avi", "frame": 3, "faces": [{"box": [0, 0, 8, 8], "score": 1}]}) + "\n")
    d2 = BoxesFileDetector(jl)
    assert d2.detect(img, "a.jpg")[0].score == 0.9  # unique file name
    assert d2.detect(img, "v.avi", 3)[0].box.tolist() == [0, 0, 8, 8]
    with pytest.raises(BoxLookupError):
        d2.detect(img, "v.avi", 4)
    # CSV with and without a header; paths relative to the boxes file's folder
    c = tmp_path / "imgs" / "b.csv"
    c.write_text("image,x1,y1,x2,y2,score\na.jpg,1,2,3,4,0.7\na.jpg,5,6,7,8,\n")
    d3 = BoxesFileDetector(c)
    assert [f.box.tolist() for f in d3.detect(img, "imgs/a.jpg")] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    c.write_text("a.jpg,1,2,3,4\n")
    assert BoxesFileDetector(c).detect(img, "a.jpg")[0].score == 1.0
    c.write_text("a.jpg,1,2,x,4\n")
    with pytest.raises(DataError, match="row"):
        BoxesFileDetector(c)
    j.write_text(json.dumps({"a.jpg": [[10, 10, 5, 5]]}))
    with pytest.raises(DataError, match="empty"):
        BoxesFileDetector(j)


@pytest.mark.parametrize("content", [
    '{"a.jpg": 5}',  # not a list of boxes
    '[{"image": "a.jpg", "boxes": 5}]',
    '[{"image": "a.jpg", "frame": "abc", "boxes": [[1, 2, 30, 40]]}]',
    '[{"image": "a.jpg", "boxes": [{"box": [1, 2, 30, 40], "score": "abc"}]}]',
    '[{"image": "a.jpg", "boxes": [[0, 0, 1e308, 1e308]]}]',  # finite, but every crop of it overflows
    "image,x1,y1,x2,y2,frame\na.jpg,1,2,30,40,nan\n",
])
def test_boxes_files_of_the_wrong_shape_are_data_errors(tmp_path, content):
    """Each of these raised TypeError, ValueError or OverflowError (a traceback, or an error record per image)."""
    f = tmp_path / ("b.csv" if content.startswith("image,") else "b.json")
    f.write_text(content)
    with pytest.raises(DataError, match="b\\.(json|csv)"):
        BoxesFileDetector(f)


@pytest.mark.parametrize("content", ['{"cx": 0, "cy": 0, "side": 1e308}', '{"cx": 1e300, "cy": 0, "side": 1}',
                                     '{"cx": true, "cy": 0, "side": 1}'])
def test_a_box_map_file_out_of_range_is_a_data_error(tmp_path, content):
    """side 1e308 used to overflow every face square: a RuntimeWarning on stderr and an error record per image."""
    from facelm.detectors.boxmap import read_box_map_file

    f = tmp_path / "map.json"
    f.write_text(content)
    with pytest.raises(DataError, match="map.json"):
        read_box_map_file(f)
    f.write_text('{"cx": -0.05, "cy": 0.1, "side": 1.2}')
    assert read_box_map_file(f)["side"] == 1.2


def test_no_detect_is_the_whole_image_as_model_crop():
    from facelm.runtime.pipeline import face_squares

    (d,) = WholeImageDetector().detect(np.zeros((30, 50, 3), np.uint8))
    assert d.kind == "crop" and d.box.tolist() == [-0.5, -0.5, 49.5, 29.5]
    (sq,) = face_squares([d], None)
    np.testing.assert_allclose(sq, [24.5, 14.5, 50 / 1.2])


def test_create_detector_option_errors(tmp_path):
    from facelm.errors import UsageError

    with pytest.raises(UsageError, match="together"):
        create_detector(boxes=tmp_path / "b.json", no_detect=True)
    with pytest.raises(UsageError, match="unknown `detector`"):
        create_detector("retina")
    assert isinstance(create_detector(no_detect=True), WholeImageDetector)


# ------------------------------------------------------------------------------------------------------------
# box map


def test_box_map_forms_and_default():
    b = np.array([[10.0, 20.0, 50.0, 70.0]])  # w 40, h 50
    np.testing.assert_allclose(boxes_to_squares(b, None), [[30, 45, 50]])
    m = {"cx": 0.1, "cy": -0.2, "side": 0.9}
    np.testing.assert_allclose(boxes_to_squares(b, m), [[34, 35, 45]])
    assert get_box_map({"detector_box_maps": {"yunet": m}}, "yunet") is m
    assert get_box_map({"detector_box_map": {"detector": "yunet", **m}}, "yunet")["side"] == 0.9
    assert get_box_map({"detector_box_map": {"detector": "yunet", **m}}, "yuface") is None
    assert DEFAULT_BOX_MAP["side"] == 1.0


class _FakeDetector(FaceDetector):
    """Boxes that are a known transform of the ground-truth face squares (plus one distractor per image)."""

    name = "fake"
    A, B, K, ASPECT = 0.04, 0.12, 0.85, 0.8

    def __init__(self, squares: dict[str, np.ndarray]):
        self.squares = squares

    def detect(self, image, name=None, frame=None):
        cx, cy, s = self.squares[Path(name).name]
        h = s / self.K
        w = self.ASPECT * h
        bx, by = cx - self.A * w, cy - self.B * h
        return [Detection(np.array([bx - w / 2, by - h / 2, bx + w / 2, by + h / 2]), 0.9),
                Detection(np.array([0, 0, 5, 5]), 0.95)]


@pytest.fixture(scope="module")
def synth_prepared(tmp_path_factory):
    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset

    root = tmp_path_factory.mktemp("boxmap")
    csv, _ = make_dataset(root / "raw", n=12, seed=4)
    prepare(PrepareOptions(source=csv, out=root / "prep", fmt="csv", workers=1))
    return root / "prep"


def test_fit_box_map_recovers_a_known_transform(synth_prepared):
    from facelm.manifest import load_manifest

    m = load_manifest(synth_prepared)
    sch = get_scheme(m.scheme)
    squares = {}
    for s, lm in zip(m.samples, m.landmarks):
        c, side = landmark_square(lm, sch.face_box_scale)
        squares[Path(s.image).name] = np.array([c[0], c[1], side])
    fit = fit_box_map(_FakeDetector(squares), synth_prepared)
    assert fit["matched"] == fit["faces"] == 12 and fit["detector"] == "fake"
    assert fit["cx"] == pytest.approx(_FakeDetector.A, abs=1e-4)
    assert fit["cy"] == pytest.approx(_FakeDetector.B, abs=1e-4)
    assert fit["side"] == pytest.approx(_FakeDetector.K, abs=1e-4)
    assert fit["residuals"]["centre_err_median"] < 1e-3 and fit["residuals"]["iou_mean"] > 0.999
    assert fit["residuals_identity"]["iou_mean"] < 0.9


def test_fit_from_pairs_is_robust_to_a_few_bad_matches():
    rng = np.random.default_rng(0)
    sq = np.column_stack([rng.uniform(50, 150, 40), rng.uniform(50, 150, 40), rng.uniform(40, 80, 40)])
    h = sq[:, 2] / 0.9
    w = h
    boxes = np.column_stack([sq[:, 0] - w / 2, sq[:, 1] - 0.1 * h - h / 2, sq[:, 0] + w / 2, sq[:, 1] - 0.1 * h + h / 2])
    boxes[:5] += 40  # wrong matches
    fit = fit_from_pairs(boxes, sq, "x")
    assert fit["side"] == pytest.approx(0.9, abs=1e-6) and fit["cy"] == pytest.approx(0.1, abs=1e-6)
    with pytest.raises(DataError):
        fit_from_pairs(np.zeros((0, 4)), np.zeros((0, 3)))


def _tiny_stage1_onnx(path: Path) -> Path:
    from facelm.models import create_model

    model = create_model("cnn6", 68, width=0.125).eval()
    torch.onnx.export(model, (torch.full((1, 3, 64, 64), 127.0),), str(path), input_names=["images"],
                      output_names=["landmarks"], dynamic_axes={"images": {0: "n"}, "landmarks": {0: "n"}},
                      opset_version=17, dynamo=False)
    proto = onnx.load(str(path))
    set_onnx_meta(proto, {"arch": "cnn6", "stage": 1, "input_size": [64, 64], "num_landmarks": 68,
                          "scheme": get_scheme("300w68").to_dict(), "crop": {"crop_expand": 1.2}})
    onnx.save(proto, str(path))
    return path


def test_write_box_map_into_the_stage1_model_and_predict_uses_it(tmp_path):
    from facelm.runtime import Landmarker, load_models

    p = _tiny_stage1_onnx(tmp_path / "cnn6.onnx")
    fit = {"detector": "yunet", "cx": 0.01, "cy": 0.2, "side": 0.8, "matched": 3}
    meta = write_box_map(p, fit)
    assert read_onnx_meta(p)["detector_box_maps"]["yunet"] == fit == meta["detector_box_maps"]["yunet"]
    write_box_map(p, {**fit, "detector": "yuface", "side": 0.7})
    maps = read_onnx_meta(p)["detector_box_maps"]
    assert set(maps) == {"yunet", "yuface"} and not list(tmp_path.glob(".*"))

    class Named(WholeImageDetector):
        name = "yunet"

    pair = load_models(tmp_path, 1)
    assert Landmarker(pair, Named()).box_map_source == "model"
    assert Landmarker(pair, Named()).box_map["side"] == 0.8
    with pytest.raises(ModelError, match="detector name"):
        write_box_map(p, {"cx": 0})
    (tmp_path / "x.onnx").write_bytes(b"junk")
    with pytest.raises(ModelError, match="not a readable ONNX"):
        write_box_map(tmp_path / "x.onnx", fit)


@needs_yunet
def test_fit_box_map_with_yunet_on_real_faces(tmp_path):
    from facelm.prepare import PrepareOptions, prepare

    if not YTF.is_dir():
        pytest.skip("shared data not available")
    prepare(PrepareOptions(source=YTF / "training_frames_keypoints.csv", out=tmp_path / "ytf", fmt="csv",
                           limit=40, workers=1, cache_size=32))
    fit = fit_box_map(Y.YuNetDetector(YUNET), tmp_path / "ytf")
    assert fit["matched"] >= 0.8 * fit["faces"]
    # the fitted map brings YuNet boxes closer to the training squares than the identity default
    assert fit["residuals"]["iou_mean"] > fit["residuals_identity"]["iou_mean"]
    assert fit["residuals"]["centre_err_median"] < 0.1 and 0.6 < fit["side"] < 1.3


@needs_yunet
def test_fit_box_map_command(tmp_path):
    from typer.testing import CliRunner

    from facelm.cli import app
    from facelm.prepare import PrepareOptions, prepare

    if not YTF.is_dir():
        pytest.skip("shared data not available")
    prepare(PrepareOptions(source=YTF / "training_frames_keypoints.csv", out=tmp_path / "ytf", fmt="csv",
                           limit=12, workers=1, cache_size=32))
    models = tmp_path / "models"
    models.mkdir()
    _tiny_stage1_onnx(models / "cnn6.onnx")
    args = ["fit-box-map", "--data", str(tmp_path / "ytf"), "--models", str(models), "--detector", "yunet",
            "--detector-model", str(YUNET)]
    r = CliRunner().invoke(app, [*args, "--dry-run"])
    assert r.exit_code == 0, r.stderr
    fit = json.loads(r.stdout)
    assert fit["detector"] == "yunet" and fit["matched"] >= 10 and "matched" in r.stderr
    assert "detector_box_maps" not in read_onnx_meta(models / "cnn6.onnx")
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and read_onnx_meta(models / "cnn6.onnx")["detector_box_maps"]["yunet"]["side"] == fit["side"]
