"""``facelm predict``: sources, records, formats, bad input, model checks, providers, and the two-stage geometry
(a face rotated by 25 degrees: stage 2 beats stage 1 and the reported angle is right)."""

from __future__ import annotations

import json
import math
import shutil
import struct
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from conftest import graded_video

from facelm.cli import app
from facelm.export import set_onnx_meta

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _png(path: Path, img: np.ndarray | None = None, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if img is None:
        img = np.full((size, size, 3), 128, np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _invoke(args: list[str], stdin: str | None = None):
    return runner.invoke(app, ["predict", *args], input=stdin)


# ------------------------------------------------------------------------------------------------------------
# models: tiny random-weight exports (fast), shared by the CLI tests


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    from conftest import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny"))["models"]





# ------------------------------------------------------------------------------------------------------------
# the CLI with tiny models


def test_predict_records_and_bad_files(tiny_models, tmp_path):
    _png(tmp_path / "in" / "ok.png")
    gray16 = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50)
    _png(tmp_path / "in" / "gray16.png", gray16)
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 3] = 255
    _png(tmp_path / "in" / "rgba.png", rgba)
    (tmp_path / "in" / "zero.jpg").write_bytes(b"")
    (tmp_path / "in" / "text.jpg").write_text("this is not an image")
    r = _invoke([str(tmp_path / "in"), "--models", str(tiny_models), "--no-detect"])
    assert r.exit_code == 1, r.stderr
    recs = _lines(r.stdout)  # every stdout line is JSON
    by = {Path(x["image"]).name: x for x in recs}
    assert set(by) == {"ok.png", "gray16.png", "rgba.png", "zero.jpg", "text.jpg"}
    ok = by["ok.png"]
    assert ok["error"] is None and (ok["width"], ok["height"]) == (24, 24)
    (face,) = ok["faces"]
    assert set(face) == {"box", "score", "angle", "landmarks", "scheme", "pose", "quality"} \
        and len(face["landmarks"]) == 68
    assert by["gray16.png"]["error"] is None and by["gray16.png"]["width"] == 40
    assert by["rgba.png"]["error"] is None
    for bad in ("zero.jpg", "text.jpg"):
        assert by[bad]["error"] and by[bad]["faces"] == [] and by[bad]["width"] is None
    assert "zero.jpg: empty file" in r.stderr and "text.jpg" in r.stderr


def test_predict_stdin_csv_json_draw_and_stages(tiny_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i in range(3):
        _png(tmp_path / "imgs" / f"{i}.png", size=32 + 8 * i)
    paths = "".join(f"imgs/{i}.png\n" for i in range(3))
    r = _invoke(["-", "--models", str(tiny_models), "--no-detect", "--draw", "drawn", "--batch", "2"], paths)
    assert r.exit_code == 0, r.stderr
    recs = _lines(r.stdout)
    assert [x["image"] for x in recs] == ["imgs/0.png", "imgs/1.png", "imgs/2.png"]
    assert sorted(p.name for p in (tmp_path / "drawn" / "imgs").iterdir()) == ["0.png", "1.png", "2.png"]
    assert "CPUExecutionProvider" in r.stderr  # providers reported
    r1 = _invoke(["imgs", "--models", str(tiny_models), "--no-detect", "--stages", "1", "-f", "json"])
    doc = json.loads(r1.stdout)
    assert r1.exit_code == 0 and len(doc) == 3 and "stage 1 only" in r1.stderr
    # stage 1 alone differs from the two-stage result
    assert doc[0]["faces"][0]["landmarks"] != recs[0]["faces"][0]["landmarks"]
    r2 = _invoke(["imgs", "--models", str(tiny_models), "--no-detect", "-f", "csv", "-o", "out.csv"])
    assert r2.exit_code == 0 and r2.stdout == ""
    rows = (tmp_path / "out.csv").read_text().splitlines()
    head = rows[0].split(",")
    # the landmarks right after `angle` (the older column order), the newer columns at the end
    assert head[:11] == ["image", "frame", "face", "box_x1", "box_y1", "box_x2", "box_y2", "score", "angle",
                         "x0", "y0"]
    assert head[9 + 136:] == ["width", "height", "error", "quality", "yaw", "pitch", "roll", "track"]
    assert len(rows) == 4
    assert all(len(r.split(",")) == len(head) for r in rows)


def test_predict_video_and_boxes_file(tiny_models, tmp_path):
    v = graded_video(tmp_path / "clip.avi")
    r = _invoke([str(v), "--models", str(tiny_models), "--no-detect", "--vid-stride", "4"])
    assert r.exit_code == 0, r.stderr
    assert [x["frame"] for x in _lines(r.stdout)] == [0, 4, 8]
    img = _png(tmp_path / "two.png", size=64)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({str(img): [[2, 2, 30, 30], [30, 30, 60, 60, 0.5]]}))
    r = _invoke([str(img), str(tmp_path / "clip.avi"), "--models", str(tiny_models), "--boxes", str(boxes),
                 "--vid-stride", "5"])
    recs = _lines(r.stdout)
    assert [len(x["faces"]) for x in recs] == [2, 0, 0] and recs[0]["faces"][1]["score"] == 0.5
    assert recs[1]["error"].startswith("no boxes") and r.exit_code == 1


def test_a_folder_of_2000_files(tiny_models, tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    _, buf = cv2.imencode(".png", np.full((8, 8, 3), 90, np.uint8))
    for i in range(2000):
        (d / f"{i:05d}.png").write_bytes(buf.tobytes())
    (d / "00007.png").write_bytes(b"")  # one broken file in the middle
    t0 = time.perf_counter()
    r = _invoke([str(d), "--models", str(tiny_models), "--no-detect", "--stages", "1", "--batch", "64", "-q"])
    recs = _lines(r.stdout)
    assert len(recs) == 2000 and r.exit_code == 1
    assert [x["image"] for x in recs] == sorted(x["image"] for x in recs)  # input order kept
    assert sum(x["error"] is not None for x in recs) == 1
    assert time.perf_counter() - t0 < 60


def test_no_images_found_is_exit_3(tiny_models, tmp_path):
    (tmp_path / "empty").mkdir()
    r = _invoke([str(tmp_path / "empty"), "--models", str(tiny_models), "--no-detect"])
    assert r.exit_code == 3 and "no images found" in r.stderr
    assert _lines(r.stdout)[0]["error"]  # the source still gets its record
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'empty'}: {_lines(r.stdout)[0]['error']}"]  # one line, not two
    r = _invoke([str(tmp_path / "empty"), str(tmp_path / "nosuch.jpg"), "--models", str(tiny_models), "--no-detect",
                 "-q"])
    assert r.exit_code == 3 and len(r.stderr.strip().splitlines()) == 2  # one error line per source named
    r = _invoke(["-", "--models", str(tiny_models), "--no-detect"], "")
    assert r.exit_code == 3


def test_exif_orientation_is_applied(tiny_models, tmp_path):
    _, buf = cv2.imencode(".jpg", np.full((20, 40, 3), 100, np.uint8))  # 40 wide, 20 high
    data = buf.tobytes()
    # APP1 Exif, little-endian TIFF, one IFD entry: Orientation (0x0112) SHORT = 6 (rotate 90 clockwise)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) \
        + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    jpg = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    p = tmp_path / "rot.jpg"
    p.write_bytes(jpg)
    (rec,) = _lines(_invoke([str(p), "--models", str(tiny_models), "--no-detect"]).stdout)
    assert (rec["width"], rec["height"]) == (20, 40)
    (rec,) = _lines(_invoke([str(p), "--models", str(tiny_models), "--no-detect", "--no-exif"]).stdout)
    assert (rec["width"], rec["height"]) == (40, 20)


def _copy_with_meta(src: Path, dst: Path, **changes) -> Path:
    proto = onnx.load(str(src))
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == "facelm"))
    for k, v in changes.items():
        meta[k] = v
    set_onnx_meta(proto, meta)
    onnx.save(proto, str(dst))
    return dst


def test_model_checks_are_exit_4(tiny_models, tmp_path):
    img = _png(tmp_path / "a.png")
    # stage 2 with another scheme than stage 1
    bad = tmp_path / "mismatch"
    bad.mkdir()
    shutil.copy(tiny_models / "cnn6.onnx", bad / "cnn6.onnx")
    scheme = json.loads(next(p.value for p in onnx.load(str(tiny_models / "cnn7.onnx")).metadata_props
                             if p.key == "facelm"))["scheme"]
    _copy_with_meta(tiny_models / "cnn7.onnx", bad / "cnn7.onnx", scheme={**scheme, "name": "other68"})
    r = _invoke([str(img), "--models", str(bad), "--no-detect"])
    assert r.exit_code == 4 and "does not match stage 1" in r.stderr and r.stdout == ""
    # an ONNX file that is not a facelm model
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    plain = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    plain.ir_version = 8
    onnx.save(plain, str(foreign / "cnn6.onnx"))
    r = _invoke([str(img), "--models", str(foreign), "--no-detect"])
    assert r.exit_code == 4 and "not a facelm model" in r.stderr
    (foreign / "cnn6.onnx").write_bytes(b"garbage")
    r = _invoke([str(img), "--models", str(foreign), "--no-detect"])
    assert r.exit_code == 4 and "not a loadable ONNX" in r.stderr
    r = _invoke([str(img), "--models", str(tmp_path / "nothing"), "--no-detect"])
    assert r.exit_code == 4 and "no models found" in r.stderr and "--models" in r.stderr
    only1 = tmp_path / "only1"
    only1.mkdir()
    shutil.copy(tiny_models / "cnn6.onnx", only1 / "s1.onnx")
    r = _invoke([str(img), "--models", str(only1), "--no-detect", "--stages", "2"])
    assert r.exit_code == 4 and "no stage-2 model" in r.stderr
    assert _invoke([str(img), "--models", str(only1), "--no-detect"]).exit_code == 0  # stage 1 only


def test_stage2_marked_not_default_runs_only_when_asked(tiny_models, tmp_path):
    import onnx

    from facelm.export import read_onnx_meta, set_onnx_meta

    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(tiny_models / "cnn6.onnx", d / "cnn6.onnx")
    proto = onnx.load(str(tiny_models / "cnn7.onnx"))
    set_onnx_meta(proto, {**read_onnx_meta(tiny_models / "cnn7.onnx"), "predict_default": False,
                          "predict_default_reason": "worse than stage 1 on val"})
    onnx.save(proto, str(d / "cnn7.onnx"))
    img = _png(tmp_path / "a.png")
    r = _invoke([str(img), "--models", str(d), "--no-detect"])
    assert r.exit_code == 0, r.stderr
    assert "not run by default (worse than stage 1 on val)" in r.stderr and "stage 1 only" in r.stderr
    r = _invoke([str(img), "--models", str(d), "--no-detect", "--stages", "2"])
    assert r.exit_code == 0 and "stage 2, cnn7" in r.stderr


def test_device_cuda_falls_back_to_cpu_with_one_warning(tiny_models, tmp_path, monkeypatch):
    from facelm.runtime import session as S

    if S.cuda_usable(0)[0]:
        pytest.skip("CUDA is usable here")
    monkeypatch.setattr(S, "_warned", set())
    img = _png(tmp_path / "a.png")
    r = _invoke([str(img), str(img), "--models", str(tiny_models), "--no-detect", "--device", "cuda"])
    assert r.exit_code == 0
    assert r.stderr.count("CUDA is not usable") == 1 and "running on CPU" in r.stderr
    assert "onnxruntime providers: CPUExecutionProvider" in r.stderr
    assert r.stderr.count("warning") == 1


def test_offline_without_detector_is_exit_4(tiny_models, tmp_path, monkeypatch):
    import urllib.error

    from facelm.detectors import yunet as Y

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(Y.ENV_MODEL, raising=False)
    monkeypatch.setattr(Y, "bundled_model", lambda: None)  # an install stripped of its bundled detector
    monkeypatch.setattr("facelm.detectors.yuface_available", lambda: False)
    monkeypatch.setattr(Y, "_fetch", lambda url, timeout: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    r = _invoke([str(_png(tmp_path / "a.png")), "--models", str(tiny_models)])
    assert r.exit_code == 4 and "--detector-model" in r.stderr and r.stdout == ""


def test_a_corrupt_bundled_detector_is_exit_4_naming_the_file(tiny_models, tmp_path, monkeypatch):
    from facelm.detectors import yunet as Y

    bad = tmp_path / "detectors"
    bad.mkdir()
    good = Y.bundled_detector_dir() / Y.YUNET_FILE
    (bad / Y.YUNET_FILE).write_bytes(good.read_bytes()[:-1] + b"x")  # one byte changed
    monkeypatch.setattr(Y, "bundled_detector_dir", lambda: bad)
    monkeypatch.delenv(Y.ENV_MODEL, raising=False)
    monkeypatch.setattr(Y, "_fetch", lambda url, timeout: pytest.fail("must not download over a corrupt file"))
    r = _invoke([str(_png(tmp_path / "a.png")), "--models", str(tiny_models)])
    assert r.exit_code == 4 and r.stdout == ""
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and str(bad / Y.YUNET_FILE) in err[0] and "sha256" in err[0], r.stderr


# ------------------------------------------------------------------------------------------------------------
# crops at inference are the training crops


def test_inference_crops_match_the_training_crops():
    """Stage 1 and stage 2 crop matrices (image -> model input) equal those training composes through the cache."""
    from facelm.detectors.base import Detection
    from facelm.geometry import compose_affine, crop_matrix, landmark_square
    from facelm.runtime.pipeline import face_squares
    from facelm.schemes import get_scheme
    from facelm.synthetic import template_68
    from facelm.transforms import face_frames, frame_matrices, upright_frames

    sch = get_scheme("300w68")
    t = math.radians(17.0)
    lm = (template_68() - 0.5) * 140 @ np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]]) + [300, 210]
    centre, side = landmark_square(lm, sch.face_box_scale)
    cache = crop_matrix(centre, side * 1.8, 192)  # what `facelm prepare` does (cache 192 px, margin 1.8)
    # stage 1: training = frame_matrices(face_frames) o cache; inference = frame_matrices of the image square
    train1 = compose_affine(frame_matrices(face_frames(1, 192, 1.8), 64)[0][0], cache)
    box = np.array([centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2])
    (sq,) = face_squares([Detection(box, kind="face-square")], None)
    infer1 = frame_matrices(np.array([[*sq, 0.0]]), 64)[0][0]
    np.testing.assert_allclose(infer1, train1, atol=1e-9)
    # stage 2: training takes upright_frames of the shape in cache pixels, inference in image pixels
    lm_cache = lm @ cache[:, :2].T + cache[:, 2]
    train2 = compose_affine(frame_matrices(upright_frames(lm_cache[None], *sch.eye_centres(lm_cache[None]),
                                                          sch.face_box_scale), 128)[0][0], cache)
    infer2 = frame_matrices(upright_frames(lm[None], *sch.eye_centres(lm[None]), sch.face_box_scale), 128)[0][0]
    np.testing.assert_allclose(infer2, train2, atol=1e-9)


# ------------------------------------------------------------------------------------------------------------
# the two-stage geometry on a rotated face


# Recipe of the small models trained here when models/ has no real ones (measured, see the test's docstring).
_DRAWN_RECIPE = {"images": 160, "size": 96, "cnn6": {"steps": 200, "width": 0.25, "batch_size": 32},
                 "cnn7": {"steps": 200, "width": 0.125, "batch_size": 16}, "lr": 2e-3, "warmup": 20, "seed": 0}


def _train_drawn_models(out: Path, work: Path) -> Path:
    """Train CNN-6 and CNN-7 on upright drawn faces (training augmentation adds the rotations), export to ``out``."""
    from facelm.config import TrainConfig
    from facelm.export import export_onnx
    from facelm.prepare import PrepareOptions, prepare
    from facelm.train import train

    r = _DRAWN_RECIPE
    rng = np.random.default_rng(r["seed"])
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rows = []
    size = r["size"]
    for i in range(r["images"]):
        img, lm = _draw_face(size, np.full(2, size / 2) + rng.uniform(-0.06, 0.06, 2) * size,
                             size * rng.uniform(0.45, 0.6), 0.0, rng)
        cv2.imwrite(str(raw / f"f{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        rows.append(f"f{i:04d}.png," + ",".join(f"{v:.3f}" for v in lm.reshape(-1)))
    (raw / "lm.csv").write_text("," + ",".join(str(k) for k in range(136)) + "\n" + "\n".join(rows) + "\n")
    prepare(PrepareOptions(source=raw / "lm.csv", out=work / "prep", fmt="csv", workers=2, cache_size=size))
    for arch in ("cnn6", "cnn7"):
        cfg = TrainConfig(data=str(work / "prep"), out=str(work / arch), arch=arch, threads=0, lr=r["lr"],
                          warmup=r["warmup"], seed=r["seed"], val_every=10_000, log_every=10_000, **r[arch]).filled()
        train(cfg, force=True)
        export_onnx(work / arch / "last.pt", out / f"{arch}.onnx")
    return out


def _drawn_models(cache, tmp_path_factory) -> Path:
    """The drawn-face models, kept in pytest's cache (keyed by the recipe) so only the first run trains them."""
    import hashlib

    import torch

    from facelm import __version__

    key = hashlib.sha256(json.dumps([_DRAWN_RECIPE, __version__, torch.__version__], sort_keys=True).encode())
    d = Path(cache.mkdir(f"facelm-drawn-models-{key.hexdigest()[:12]}"))
    if not ((d / "cnn6.onnx").is_file() and (d / "cnn7.onnx").is_file()):
        _train_drawn_models(d, tmp_path_factory.mktemp("drawn"))
    return d


def _ytf_rotated(angle: float, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` ytf68-train faces rotated by ``angle`` degrees (clockwise on screen) about their centre."""
    import csv

    from facelm.imageio import read_image

    ytf = REPO.parent / "shared" / "data" / "ytf68-train"
    with open(ytf / "training_frames_keypoints.csv", newline="") as f:
        rows = [r for r in csv.reader(f)][1:]
    out = []
    for r in rows[:: max(1, len(rows) // n)][:n]:
        img = read_image(ytf / r[0])
        lm = np.array(r[1:], dtype=float).reshape(-1, 2)
        c = (lm.min(0) + lm.max(0)) / 2
        m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), -angle, 1.0)  # OpenCV: positive = anticlockwise
        out.append((cv2.warpAffine(img, m, img.shape[1::-1], flags=cv2.INTER_LINEAR), lm @ m[:, :2].T + m[:, 2]))
    return out


def _draw_face(size: int, centre: np.ndarray, scale: float, angle: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """A drawn 68-point face (curves for jaw, brows, nose, eyes with pupils, lips) rotated by ``angle`` degrees
    (positive = clockwise on screen); returns (RGB image, landmarks (68, 2))."""
    from facelm.synthetic import template_68

    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    lm = ((template_68() - 0.5) * scale) @ np.array([[c, s], [-s, c]]) + centre
    img = np.full((size, size, 3), int(rng.integers(30, 110)), np.uint8)
    img = cv2.add(img, np.repeat(rng.integers(0, 25, (size, size, 1), dtype=np.uint8), 3, 2))
    cv2.ellipse(img, (int(centre[0]), int(centre[1] + 0.05 * scale)), (int(scale * 0.5), int(scale * 0.62)), angle,
                0, 360, (200, 160, 130), -1, cv2.LINE_AA)
    th = max(1, round(scale / 40))
    for a, b, closed in ((0, 17, False), (17, 22, False), (22, 27, False), (27, 31, False), (31, 36, False),
                         (36, 42, True), (42, 48, True), (48, 60, True), (60, 68, True)):
        pts = np.round(lm[a:b] * 16).astype(np.int32)
        col = (60, 40, 30) if a < 17 else (30, 20, 20) if a < 48 else (160, 30, 40)
        if a in (36, 42):
            cv2.fillPoly(img, [pts], (250, 250, 250), cv2.LINE_AA, shift=4)
            ctr = np.round(lm[a:b].mean(0) * 16).astype(int)
            cv2.circle(img, (int(ctr[0]), int(ctr[1])), max(1, int(scale * 0.03)) * 16, (40, 30, 20), -1,
                       cv2.LINE_AA, shift=4)
        cv2.polylines(img, [pts], closed, col, th, cv2.LINE_AA, shift=4)
    return img, lm


def test_rotated_face_two_stages_beat_stage_one_and_the_angle_is_right(request, tmp_path_factory):
    """A face rotated by 25 degrees: the two-stage error is lower than stage 1's and the angle is within 3 degrees.

    Uses the real models in models/ on ytf68-train faces when both are there; otherwise small models trained on
    drawn faces (``_DRAWN_RECIPE``; trained once, then kept in pytest's cache). Measured with the drawn-face
    models: stage-1 NME 0.055-0.065, two-stage 0.018-0.029, angle errors below 2 degrees; training them takes
    about 2-3 min on 2 busy cores (first run only; later runs take seconds).
    """
    from facelm.detectors import WholeImageDetector
    from facelm.geometry import eye_angle, landmark_square
    from facelm.runtime import Landmarker, load_models

    real = REPO / "models"
    ytf = REPO.parent / "shared" / "data" / "ytf68-train"
    if (real / "cnn6.onnx").is_file() and any((real / f"{n}.onnx").is_file() for n in ("cnn6r", "cnn7")) \
            and ytf.is_dir():
        models, cases = real, _ytf_rotated(25.0, 12)
    else:
        models = _drawn_models(request.config.cache, tmp_path_factory)
        rng = np.random.default_rng(123)
        cases = [_draw_face(160, np.array([80.0, 80.0]) + rng.uniform(-6, 6, 2), 160 * rng.uniform(0.45, 0.55),
                            25.0, rng) for _ in range(12)]
    pair = load_models(models, 2)  # both stages, also when stage 2 does not run by default
    assert pair.stage2 is not None
    lm = Landmarker(pair, WholeImageDetector())
    e1, e2, err = [], [], []
    for img, gt in cases:
        c, s = landmark_square(gt, pair.scheme.face_box_scale)
        (face,) = lm.predict_boxes(img, np.array([[c[0] - s / 2, c[1] - s / 2, c[0] + s / 2, c[1] + s / 2]]))
        io = np.linalg.norm(gt[36] - gt[45])
        e1.append(np.linalg.norm(face.stage1 - gt, axis=1).mean() / io)
        e2.append(np.linalg.norm(face.landmarks - gt, axis=1).mean() / io)
        truth = float(eye_angle(*pair.scheme.eye_centres(gt)))
        err.append(face.angle - truth)
    print(f"{models}: stage-1 NME {np.mean(e1):.4f}, two-stage NME {np.mean(e2):.4f}, "
          f"angle errors {np.round(err, 2)}")
    # stage 2 must beat stage 1 wherever it runs by default; a shipped stage 2 that lost the end-to-end comparison
    # is marked "predict_default": false (scripts/score_default.py) and only has to keep the angle right
    if pair.stage2.meta.get("predict_default", True):
        assert np.mean(e2) < np.mean(e1)
    else:
        assert np.mean(e2) < 1.5 * np.mean(e1)
    assert abs(np.median(err)) < 3.0 and np.max(np.abs(err)) < 6.0


# ------------------------------------------------------------------------------------------------------------
# flip test-time augmentation, levelling and --box-map


def test_flip_tta_makes_the_whole_pipeline_mirror_symmetric(tiny_models):
    """With ``tta="flip"`` every network's output is mirror-equivariant by construction, whatever its weights; so
    the mirror image of a face gets the mirrored landmarks (through both stages and the levelling pass)."""
    from facelm.detectors import WholeImageDetector
    from facelm.runtime import Landmarker, load_models
    from facelm.synthetic import make_dataset

    pair = load_models(tiny_models)
    img = np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(sorted((tiny_models.parent / "raw").glob("*.png"))[0])),
                                            cv2.COLOR_BGR2RGB)) if (tiny_models.parent / "raw").is_dir() else None
    if img is None:
        make_dataset(tiny_models.parent / "raw_tta", n=1, seed=4)
        img = cv2.cvtColor(cv2.imread(str(next((tiny_models.parent / "raw_tta").glob("*.png")))), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    box = np.array([[w * 0.2, h * 0.15, w * 0.75, h * 0.8]])
    mbox = np.array([[w - 1 - box[0, 2], box[0, 1], w - 1 - box[0, 0], box[0, 3]]])
    mirror = np.ascontiguousarray(img[:, ::-1])
    for tta, tol in (("flip", 0.05), ("full", 0.05), ("none", None)):
        lm = Landmarker(pair, WholeImageDetector(), tta=tta)
        (a,) = lm.predict_boxes(img, box)
        (b,) = lm.predict_boxes(mirror, mbox)
        back = pair.scheme.flip(b.landmarks, w)
        diff = np.abs(back - a.landmarks).max()
        if tol is not None:
            assert diff < tol, diff
            assert a.angle == pytest.approx(-b.angle, abs=0.05)
        else:  # without TTA a random-weight model is not symmetric: the test above is not vacuous
            assert diff > 0.1


def test_a_models_label_shift_moves_the_reported_landmarks_only(tiny_models, tmp_path):
    """Each stage's ``label_shift`` moves the landmarks it reports along the face's eye line (final: stage 2's;
    ``stage1``: stage 1's); the crops, the angle and the unshifted shapes that frame stage 2 stay as they were.
    A bad value in a file is exit 4 naming it."""
    from facelm.detectors import WholeImageDetector
    from facelm.export import read_onnx_meta
    from facelm.runtime import Landmarker, load_models

    d = tmp_path / "m"
    d.mkdir()
    for name, shift in (("cnn6", 0.03), ("cnn7", -0.05)):
        proto = onnx.load(str(tiny_models / f"{name}.onnx"))
        set_onnx_meta(proto, {**read_onnx_meta(tiny_models / f"{name}.onnx"), "label_shift": shift})
        onnx.save(proto, str(d / f"{name}.onnx"))
    img = np.random.default_rng(0).integers(0, 255, (80, 90, 3), np.uint8)
    box = np.array([[10.0, 8.0, 70.0, 72.0]])
    (a,) = Landmarker(load_models(tiny_models), WholeImageDetector()).predict_boxes(img, box)
    pair = load_models(d)
    (b,) = Landmarker(pair, WholeImageDetector()).predict_boxes(img, box)
    for shift, x, y in ((-0.05, a.landmarks, b.landmarks), (0.03, a.stage1, b.stage1)):
        le, re = pair.scheme.eye_centres(x)
        np.testing.assert_allclose(y - x, np.broadcast_to(shift * (re - le), x.shape), atol=1e-6)
    assert b.angle == pytest.approx(a.angle, abs=1e-9) and b.crop_angle == pytest.approx(a.crop_angle, abs=1e-9)
    (c,) = Landmarker(pair, WholeImageDetector(), label_shift=False).predict_boxes(img, box)  # the networks' reading
    np.testing.assert_allclose(c.landmarks, a.landmarks, atol=1e-9)
    np.testing.assert_allclose(c.stage1, a.stage1, atol=1e-9)
    png = _png(tmp_path / "a.png")
    runs = [_invoke([str(png), "--models", str(m), "--no-detect", "-q", *x])
            for m, x in ((tiny_models, []), (d, []), (d, ["--no-label-shift"]))]
    plain, shifted, off = (np.array(json.loads(r.stdout)["faces"][0]["landmarks"]) for r in runs)
    assert np.abs(shifted - plain).max() > 0.01 and np.abs(off - plain).max() < 0.011  # (rounded to 0.01 px)
    proto = onnx.load(str(d / "cnn7.onnx"))
    set_onnx_meta(proto, {**read_onnx_meta(d / "cnn7.onnx"), "label_shift": 3})
    onnx.save(proto, str(d / "cnn7.onnx"))
    r = _invoke([str(png), "--models", str(d), "--no-detect"])
    assert r.exit_code == 4 and "cnn7.onnx: label_shift 3.0 is outside" in r.stderr


def test_full_tta_averages_stage_2_over_its_framings(tiny_models, monkeypatch):
    """``tta="full"``: stage 1 as with flip; stage 2 is the mean of the flip-averaged stage 2 on each framing of
    ``STAGE2_FRAMINGS`` (each framing run alone gives one term of the mean)."""
    import facelm.runtime.pipeline as pl
    from facelm.detectors import WholeImageDetector
    from facelm.runtime import Landmarker, load_models
    from facelm.synthetic import make_dataset

    pair = load_models(tiny_models)
    make_dataset(tiny_models.parent / "raw_full", n=1, seed=5)
    img = cv2.cvtColor(cv2.imread(str(next((tiny_models.parent / "raw_full").glob("*.png")))), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    box = np.array([[w * 0.2, h * 0.15, w * 0.75, h * 0.8]])
    (flip,) = Landmarker(pair, WholeImageDetector(), tta="flip").predict_boxes(img, box)
    (full,) = Landmarker(pair, WholeImageDetector(), tta="full").predict_boxes(img, box)
    np.testing.assert_array_equal(full.stage1, flip.stage1)
    assert pl.STAGE2_FRAMINGS[0] == (1.0, 0.0, 0.0) and len(pl.STAGE2_FRAMINGS) == 7
    terms = []
    for f in pl.STAGE2_FRAMINGS:
        monkeypatch.setattr(pl, "STAGE2_FRAMINGS", (f,))
        (one,) = Landmarker(pair, WholeImageDetector(), tta="full").predict_boxes(img, box)
        terms.append(one.landmarks)
    monkeypatch.undo()
    np.testing.assert_allclose(terms[0], flip.landmarks, atol=1e-5)  # the square itself = flip TTA's stage 2
    np.testing.assert_allclose(full.landmarks, np.mean(terms, 0), atol=1e-5)
    spread = max(np.abs(t - terms[0]).max() for t in terms[1:])
    print("largest difference between framings (px):", spread)
    assert spread > 1e-3  # the framings give different crops, so the mean is not any one of them


def test_predict_options_tta_level_and_box_map(tiny_models, tmp_path):
    img = _png(tmp_path / "a.png", size=64)
    r = _invoke([str(img), "--models", str(tiny_models), "--no-detect", "--tta", "flip", "--no-level", "-q"])
    assert r.exit_code == 0, r.output
    r = _invoke([str(img), "--models", str(tiny_models), "--no-detect", "--tta", "full", "-q"])
    assert r.exit_code == 0, r.output
    r = _invoke([str(img), "--models", str(tiny_models), "--no-detect", "--tta", "mirror", "-q"])
    assert r.exit_code == 2 and "--tta" in r.output and "full" in r.output
    bad = tmp_path / "map.json"
    bad.write_text('{"cx": 0.0, "cy": "x", "side": 1.0}')
    r = _invoke([str(img), "--models", str(tiny_models), "--box-map", str(bad), "-q"])
    assert r.exit_code == 3 and "map.json" in r.output
    good = tmp_path / "good.json"
    good.write_text('{"detector": "yunet", "cx": 0.0, "cy": 0.1, "side": 0.9}')
    from facelm.detectors.boxmap import read_box_map_file

    assert read_box_map_file(good)["side"] == 0.9


def test_unrot90_inverts_numpy_quarter_turns():
    from facelm.runtime.orientation import unrot90

    a = np.arange(7 * 5).reshape(7, 5)
    for k in range(4):
        r = np.rot90(a, k)
        for x, y in [(0, 0), (3, 1), (2, 6), (4, 6)]:
            yy, xx = np.argwhere(r == a[y, x])[0]
            assert unrot90(float(xx), float(yy), k, 5, 7) == (x, y)


def test_a_cnn6r_refiner_runs_as_stage_two(tiny_models, tmp_path):
    """Stage 2 may be the CNN-6 network on the levelled crop (``cnn6r``, 64 px), warm-started from stage 1."""
    from facelm.config import TrainConfig
    from facelm.export import export_onnx
    from facelm.train import train

    root = tiny_models.parent
    cfg = TrainConfig(data=str(root / "prep"), out=str(tmp_path / "r"), arch="cnn6r", steps=1, batch_size=4,
                      width=0.125, threads=1, val_every=100, warmup=0, init=str(tiny_models / "cnn6.onnx")).filled()
    train(cfg)
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(tiny_models / "cnn6.onnx", d / "cnn6.onnx")
    export_onnx(tmp_path / "r" / "best.pt", d / "cnn6r.onnx")
    img = _png(tmp_path / "a.png")
    r = _invoke([str(img), "--models", str(d), "--no-detect", "--stages", "2"])
    assert r.exit_code == 0, r.stderr
    assert "stage 2, cnn6r" in r.stderr
    face = json.loads(r.stdout.splitlines()[0])["faces"][0]
    assert len(face["landmarks"]) == 68 and np.isfinite(np.asarray(face["landmarks"], float)).all()
