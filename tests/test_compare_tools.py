"""The pure-python parts of scripts/compare_tools.py (no dlib, MediaPipe or data needed, except where marked)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_tools.py"


@pytest.fixture(scope="module")
def ct():
    spec = importlib.util.spec_from_file_location("compare_tools", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["compare_tools"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_mp468_to_68_mapping(ct):
    assert len(ct.MP468_TO_68) == 68
    flat = [i for ix in ct.MP468_TO_68 for i in ix]
    assert all(0 <= i < 468 for i in flat)
    assert all(1 <= len(ix) <= 2 for ix in ct.MP468_TO_68)
    # outer eye corners and mouth corners of the Face Mesh topology
    assert ct.MP468_TO_68[36] == (33,) and ct.MP468_TO_68[45] == (263,)
    assert ct.MP468_TO_68[48] == (61,) and ct.MP468_TO_68[54] == (291,)
    pts = np.stack([np.arange(478), -np.arange(478)], 1).astype(float)
    out = ct.mp468_to_68(pts)
    assert out.shape == (68, 2)
    assert out[3, 0] == pytest.approx((132 + 58) / 2)  # a two-vertex point is their mean
    assert out[30, 0] == 4
    with pytest.raises(ValueError):
        ct.mp468_to_68(np.zeros((68, 2)))


def test_to_5pt(ct):
    lm = np.zeros((68, 2))
    lm[36:42] = [[0, 0], [2, 0], [4, 0], [6, 0], [2, 2], [4, 2]]
    lm[42:48] = [10, 1]
    lm[30] = [5, 5]
    lm[48] = [1, 8]
    lm[54] = [9, 8]
    five = ct.to_5pt(lm)
    means = np.array([[3, 2 / 3], [10, 1], [5, 5], [1, 8], [9, 8]])
    # the point means plus the 68 -> 5 map's offsets, in the face's eye frame (eye centres (3, 2/3) -> (10, 1))
    from facelm.scheme_maps import get_map

    off = np.array(get_map("300w68", "5pt").offsets)
    u = np.array([7.0, 1 / 3])
    np.testing.assert_allclose(five, means + off[:, :1] * u + off[:, 1:] * np.array([-u[1], u[0]]), atol=1e-12)
    assert np.abs(five - means).max() > 0.01
    with pytest.raises(ValueError):
        ct.to_5pt(np.zeros((5, 2)))


def test_box_map_fit_recovers_synthetic_map(ct):
    rng = np.random.default_rng(0)
    n = 200
    c = rng.uniform(100, 400, (n, 2))
    wh = rng.uniform(40, 200, (n, 2))
    src = np.concatenate([c - wh / 2, c + wh / 2], 1)
    true = {"dx": 0.02, "dy": -0.1, "sw": 0.85, "sh": 0.7}
    dst = ct.apply_box_map(src, true)
    dst[:10] += rng.uniform(-30, 30, (10, 4))  # a few bad pairs: medians ignore them
    m = ct.fit_box_map(src, dst)
    for k, v in true.items():
        assert m[k] == pytest.approx(v, abs=1e-3)
    assert m["pairs"] == n
    assert m["iou_mean"] > m["iou_identity_mean"]
    assert m["iou_median"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        ct.fit_box_map(np.zeros((0, 4)), np.zeros((0, 4)))


def test_match_greedy_one_to_one(ct):
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [100, 100, 110, 110]], dtype=float)
    cands = np.array([[21, 0, 31, 10], [0, 3, 10, 13], [1, 0, 11, 10]], dtype=float)
    res = ct.match_greedy(gt, cands, 0.3)
    assert res[0][0] == 2 and res[1][0] == 0 and res[2] == (None, 0.0)
    assert ct.match_greedy(gt, np.zeros((0, 4)), 0.3) == [(None, 0.0)] * 3
    assert ct.square_box(np.array([[0, 0], [4, 2]]), 2.0).tolist() == [-2, -3, 6, 5]


def test_jsonl_writer_is_read_by_facelm_evaluate(ct, tmp_path):
    from facelm.evaluate import read_predictions

    lm = np.arange(136, dtype=float).reshape(68, 2) + 0.12345
    lm[5] = np.nan
    recs = [ct.face_record("a-0", "/x/a.jpg", lm, [1, 2, 3, 4], "test", iou=0.5),
            ct.face_record("b-0", "/x/b.jpg", lm + 1, None, "test")]
    p = ct.write_jsonl(tmp_path / "sub" / "p.jsonl", recs)
    lines = p.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["landmarks"][5] == [None, None]
    assert json.loads(lines[0])["landmarks"][0] == [0.123, 1.123]
    assert not list(p.parent.glob(".*.tmp"))
    preds = read_predictions(p)
    assert preds.num_landmarks == 68 and preds.scheme == "300w68" and set(preds.by_id) == {"a-0", "b-0"}
    five = ct.convert_file_to_5pt(p, tmp_path / "p.5pt.jsonl")
    p5 = read_predictions(five)
    assert p5.num_landmarks == 5 and p5.scheme == "5pt"
    np.testing.assert_allclose(p5.by_id["a-0"].landmarks[2], ct.to_5pt(lm)[2], atol=1e-3)


def test_crop_square_offsets(ct):
    img = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    crop, off = ct.crop_square(img, np.array([-2.0, 5.0, 9.0, 15.0]), 0.25)
    assert crop.shape == (16, 16, 3)
    ox, oy = off.astype(int)
    assert (ox, oy) == (-5, 2)
    # a crop pixel inside the image equals the image pixel at crop + offset; outside it is zero
    assert (crop[3, 7] == img[3 + oy, 7 + ox]).all()
    assert (crop[3, 0] == 0).all()


def test_dlib_model_available_when_installed(ct):
    pytest.importorskip("dlib")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models is not installed")
    assert ct.dlib_model_path().is_file()


def test_mediapipe_face_mesh_runs_offline(ct):
    mp = pytest.importorskip("mediapipe")
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)
    try:
        assert ct._mp_faces(mesh, np.zeros((64, 64, 3), dtype=np.uint8)) == []
    finally:
        mesh.close()
