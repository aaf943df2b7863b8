"""The Python front door: ``facelm.Landmarker`` gives what ``facelm predict`` gives, for paths, arrays, bytes and
PIL images; ``batch`` streams with error records; bad images raise ``facelm.ImageError``; options are keywords; the
example of docs/python.md runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import facelm
from facelm.cli import app

REPO = Path(__file__).resolve().parents[1]
PHOTOS = [str(REPO / "examples" / "astronaut.jpg"), str(REPO / "examples" / "camera.jpg")]
runner = CliRunner()


@pytest.fixture(scope="module")
def lm():
    return facelm.Landmarker(device="cpu", threads=1)


def _cli(args: list[str]) -> list[dict]:
    r = runner.invoke(app, ["predict", *args, "--device", "cpu", "--threads", "1", "-q"])
    assert r.exit_code == 0, r.output
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def test_the_package_exports_a_handful_of_names():
    assert {"Landmarker", "Face", "ImageFaces", "ImageError"} <= set(facelm.__all__) <= set(dir(facelm))
    assert facelm.Landmarker is facelm.api.Landmarker
    with pytest.raises(AttributeError):
        facelm.NoSuchThing  # noqa: B018


def test_a_path_gives_what_facelm_predict_gives(lm):
    for photo, rec in zip(PHOTOS, _cli(PHOTOS)):
        faces = lm(photo)
        assert len(faces) == len(rec["faces"]) >= 1
        for face, want in zip(faces, rec["faces"]):
            assert face.to_dict() == want
            assert face.landmarks.shape == (68, 2) and face.scheme == "300w68"
            np.testing.assert_allclose(face.landmarks, want["landmarks"], atol=0.006)
            np.testing.assert_allclose(face.box, want["box"], atol=0.06)
            assert face.score == pytest.approx(want["score"], abs=1e-4)
            assert face.angle == pytest.approx(want["angle"], abs=0.006)


def test_arrays_bytes_and_pil_images_give_the_same_faces(lm):
    photo = PHOTOS[0]
    want = [f.to_dict() for f in lm(photo)]
    rgb = cv2.cvtColor(cv2.imread(photo), cv2.COLOR_BGR2RGB)  # (no EXIF rotation in this file)
    assert [f.to_dict() for f in lm(rgb)] == want
    assert [f.to_dict() for f in lm(Path(photo).read_bytes())] == want
    pil = pytest.importorskip("PIL.Image")
    assert [f.to_dict() for f in lm(pil.open(photo))] == want
    with pytest.raises(facelm.UsageError, match="`image` must be"):
        lm(np.zeros((4, 4, 3), np.float32))


def test_faces_answer_every_attribute_of_the_pipeline_face():
    from facelm.runtime.results import FaceResult, ImageResult

    @dataclass
    class LaterFace(FaceResult):  # a field another part of the pipeline adds later
        quality: float = 0.0

    f = LaterFace(box=np.zeros(4), score=0.9, angle=1.0, landmarks=np.ones((5, 2)), stage1=np.ones((5, 2)),
                  square=np.ones(3), quality=0.75)
    res = facelm.ImageFaces(ImageResult("x.jpg", None, 10, 10, [f]), "5pt")
    (face,) = res
    assert face.quality == 0.75 and "quality" in dir(face) and face.stage1.shape == (5, 2)
    assert res.to_dict()["faces"][0]["scheme"] == "5pt" and len(res) == 1 and res[0] is face
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        face.nope  # noqa: B018


def test_batch_streams_results_and_error_records(lm, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rgb = cv2.cvtColor(cv2.imread(PHOTOS[0]), cv2.COLOR_BGR2RGB)
    sources = (s for s in [PHOTOS[0], str(tmp_path / "missing.jpg"), bad, rgb])  # a generator is fine
    results = list(lm.batch(sources))
    assert [r.image for r in results] == [PHOTOS[0], str(tmp_path / "missing.jpg"), str(bad), "<array 3>"]
    assert [r.error is None for r in results] == [True, False, False, True]
    assert results[0].to_dict() == _cli([PHOTOS[0]])[0]
    assert [f.to_dict() for f in results[3]] == [f.to_dict() for f in results[0]]
    assert [r.image for r in lm.batch(str(REPO / "examples"))] == sorted(PHOTOS)  # a folder, as in predict


@pytest.mark.parametrize("content, reason", [(None, "file not found"), (b"", "empty file"),
                                             (b"GIF89a...", "not a decodable image")])
def test_an_unreadable_image_raises_image_error_with_its_path(lm, tmp_path, content, reason):
    p = tmp_path / "x.jpg"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(facelm.ImageError) as e:
        lm(p)
    assert e.value.path == str(p) and reason in e.value.reason and str(p) in str(e.value)
    assert isinstance(e.value, facelm.DataError)


@pytest.mark.parametrize("kw, match", [({"stages": 3}, "`stages`"), ({"tta": "x"}, "`tta`"),
                                       ({"batch": 0}, "`batch`"), ({"detector": "nope"}, "`detector`"),
                                       ({"device": "tpu"}, "device"), ({"to_scheme": "aflw19"}, "`to_scheme`"),
                                       ({"precision": "int4"}, "`precision`"),
                                       ({"boxes": "b.json", "no_detect": True}, "cannot be used together")])
def test_bad_options_are_usage_errors(kw, match, no_aflw19_map):
    # (no_aflw19_map: every built-in scheme has a map from 300w68; the test needs one without)
    with pytest.raises(facelm.UsageError, match=match):
        facelm.Landmarker(**kw)


def test_keywords_match_predict_options(tmp_path):
    img = cv2.cvtColor(cv2.imread(PHOTOS[0]), cv2.COLOR_BGR2RGB)
    square = [177.0, 82.0, 269.0, 174.0]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({PHOTOS[0]: [square]}))
    want = _cli([PHOTOS[0], "--boxes", str(boxes), "--stages", "2", "--to-scheme", "5pt"])[0]["faces"]
    got = facelm.Landmarker(boxes=boxes, stages=2, to_scheme="5pt", device="cpu", threads=1)(PHOTOS[0])
    assert [f.to_dict() for f in got] == want and got[0].landmarks.shape == (5, 2)
    lm2 = facelm.Landmarker(stages=2, to_scheme="5pt", device="cpu", threads=1)
    assert [f.to_dict() for f in lm2(img, boxes=[square])] == want  # per-call boxes: face squares
    assert lm2.scheme == "5pt" and "cnn6r" in repr(lm2)  # the shipped stage 2
    # label_shift=False is --no-label-shift: the shipped models' 0.012 eye distances along the eye line, taken off
    want = _cli([PHOTOS[0], "--boxes", str(boxes), "--no-label-shift"])[0]["faces"]
    off = facelm.Landmarker(boxes=boxes, device="cpu", threads=1, label_shift=False)(PHOTOS[0])
    on = facelm.Landmarker(boxes=boxes, device="cpu", threads=1)(PHOTOS[0])
    assert [f.to_dict() for f in off] == want
    a, b = off[0].landmarks, on[0].landmarks
    u = b[42:48].mean(0) - b[36:42].mean(0)
    np.testing.assert_allclose(b - a, np.broadcast_to(0.012 * u, a.shape), atol=0.02)  # (rounded outputs)


def test_precision_keyword_is_predicts(tmp_path):
    want = _cli([PHOTOS[0], "--precision", "fp32"])[0]["faces"]
    lm = facelm.Landmarker(precision="fp32", device="cpu", threads=1)
    assert lm.models.precision == "fp32" and [f.to_dict() for f in lm(PHOTOS[0])] == want


def test_docs_python_example_runs(tmp_path):
    text = (REPO / "docs" / "python.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/python.md has no python example"
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "examples/astronaut.jpg" in r.stdout


@pytest.mark.parametrize("kw, name", [({"batch": 0}, "batch"), ({"batch": 5000}, "batch"), ({"stages": 3}, "stages"),
                                      ({"score_threshold": float("nan")}, "score_threshold"),
                                      ({"threads": -1}, "threads"), ({"streams": 65}, "streams"),
                                      ({"tta": "x"}, "tta"), ({"boxes_kind": "x"}, "boxes_kind")])
def test_predict_options_are_checked_once_for_the_cli_and_the_api(kw, name):
    """facelm.runtime.setup is where both front doors check their options: the library names the parameter, the CLI
    shows it as its flag."""
    from facelm.cli._common import cli_message
    from facelm.runtime.setup import check_predict_options

    with pytest.raises(facelm.UsageError, match=f"`{name}`") as e:
        check_predict_options(**kw)
    assert cli_message(str(e.value)).startswith("--" + name.replace("_", "-"))
