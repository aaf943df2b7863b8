"""Contract leftovers found by hostile runs: an empty ``evaluate --scheme-map``, ``fit-box-map`` on a set without a
train split, a Ray batch whose name and image columns differ in length, and a truncated video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_video

from facelm.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def lines(text: str, prefix: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(prefix)]


# ------------------------------------------------------------------------------------------------------------
# 1. evaluate --scheme-map "" was Path("."), the current folder ("cannot read scheme map: Is a directory")


def test_evaluate_refuses_an_empty_scheme_map_before_any_work(tmp_path):
    from facelm.manifest import Sample, write_manifest

    lm = np.random.default_rng(0).uniform(10, 90, size=(68, 2))
    data = tmp_path / "data"
    data.mkdir()
    write_manifest(data / "manifest.jsonl", [Sample(id="f0", image="img0.png", width=100, height=100,
                                                    box=[0.0, 0.0, 100.0, 100.0], landmarks=lm.tolist(),
                                                    scheme="300w68", split="test")])
    (data / "prepare.json").write_text("{}")
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "f0", "landmarks": lm.tolist()}) + "\n")
    assert invoke("evaluate", preds, "--data", data).exit_code == 0  # the same run without the option works
    for empty in ("", " "):
        r = invoke("evaluate", preds, "--data", data, "--scheme-map", empty, "--per-face", tmp_path / "pf.csv")
        assert r.exit_code == 2 and r.stdout == "", r.stderr
        assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [
            f"error: --scheme-map must not be empty, got {empty!r}"]
        assert not (tmp_path / "pf.csv").exists()


# ------------------------------------------------------------------------------------------------------------
# 2. fit-box-map on a prepared set without a train split fitted on its held-out faces without a word


def _square_detector(prepared: Path):
    """A detector that finds each image's ground-truth face square (from its manifest): every face matches."""
    from facelm.detectors.base import Detection, FaceDetector
    from facelm.geometry import landmark_square
    from facelm.manifest import load_manifest
    from facelm.schemes import get_scheme

    m = load_manifest(prepared)
    scale = get_scheme(m.scheme).face_box_scale
    boxes = {}
    for s, lm in zip(m.samples, m.landmarks, strict=True):
        (cx, cy), side = landmark_square(lm, scale)
        boxes[Path(s.image).name] = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])

    class Squares(FaceDetector):
        name = "squares"

        def detect(self, image, name=None, frame=None):
            return [Detection(boxes[Path(name).name], 0.9)]

    return Squares()


@pytest.fixture(scope="module")
def test_only_set(tmp_path_factory) -> Path:
    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset

    root = tmp_path_factory.mktemp("testonly")
    csv, _ = make_dataset(root / "raw", n=4, seed=3)
    prepare(PrepareOptions(source=csv, out=root / "prep", fmt="csv", split="test", workers=1))
    return root / "prep"


def test_fit_box_map_warns_when_it_falls_back_to_held_out_faces(test_only_set, data_dir):
    from facelm.detectors.boxmap import fit_box_map

    got: list[str] = []
    fit = fit_box_map(_square_detector(test_only_set), test_only_set, warn=got.append)
    assert fit["matched"] == fit["faces"] == 4  # the behaviour is kept: all its faces are used
    assert got == [f"{test_only_set}: no train split: the box map is fitted on its held-out (val/test) faces "
                   "(4 test), so scoring on them afterwards is not held out"]
    got.clear()
    fit = fit_box_map(_square_detector(data_dir), data_dir, warn=got.append)  # has a train split: no warning
    assert got == [] and fit["faces"] < 32


def test_fit_box_map_command_says_so_on_stderr(test_only_set, monkeypatch):
    import facelm.detectors

    monkeypatch.setattr(facelm.detectors, "create_detector", lambda *a, **k: _square_detector(test_only_set))
    r = invoke("fit-box-map", "--data", test_only_set, "--models", REPO / "models", "--dry-run", "-q")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["matched"] == 4  # stdout: the map only
    (line,) = lines(r.stderr, "warning: ")
    assert "fitted on its held-out (val/test) faces (4 test)" in line and "not held out" in line


# ------------------------------------------------------------------------------------------------------------
# 3. Ray UDF: a `path` column longer than `bytes` paired rows silently (shorter: a bare IndexError)


@pytest.mark.parametrize("n_names,kind", [(3, "bytes"), (1, "bytes"), (3, "image")])
def test_ray_udf_refuses_a_batch_whose_columns_differ_in_length(n_names, kind):
    from facelm.integrations.ray import FacelmLandmarker

    f = FacelmLandmarker()
    column = (np.array([b"not an image", b"nor this"], dtype=object) if kind == "bytes"
              else np.zeros((2, 8, 8, 3), np.uint8))
    batch = {kind: column, "path": np.array([f"p{i}.jpg" for i in range(n_names)])}
    with pytest.raises(KeyError, match=rf"'path' column has {n_names} rows but its '{kind}' column has 2"):
        f.records(batch)
    assert len(f.records({kind: column, "path": np.array(["a.jpg", "b.jpg"])})) == 2  # equal lengths: fine


# ------------------------------------------------------------------------------------------------------------
# 4. a truncated video decoded its first frames and predict said nothing. MJPG in AVI: the container's header
# holds the frame count (CAP_PROP_FRAME_COUNT reads it exactly), and a file cut in half still opens and decodes
# the frames before the cut.


def _videos(tmp_path: Path, n: int = 40) -> tuple[Path, Path]:
    frames = [np.full((24, 32, 3), 6 * i, np.uint8) for i in range(n)]
    whole = write_video(tmp_path / "whole.avi", frames)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return whole, cut


def test_a_truncated_video_gives_its_frames_and_one_warning(tmp_path):
    from facelm.sources import iter_sources

    whole, cut = _videos(tmp_path)
    got: list[str] = []
    assert len(list(iter_sources([str(whole)], warn=got.append))) == 40 and got == []
    items = list(iter_sources([str(cut)], warn=got.append))
    n = len(items)
    assert 0 < n < 36 and all(it.error is None for it in items)
    assert got == [f"{cut}: decoded {n} of the 40 frames its container announces; the file may be truncated"]
    got.clear()
    assert len(list(iter_sources([str(cut)], vid_stride=4, warn=got.append))) == (n + 3) // 4
    assert got == [f"{cut}: decoded {n} of the 40 frames its container announces; the file may be truncated"]
    with pytest.warns(RuntimeWarning, match="the file may be truncated"):  # Python callers without `warn`
        list(iter_sources([str(cut)]))


def test_a_small_shortfall_or_no_announced_count_is_no_warning():
    from facelm.sources import _cut_short

    assert _cut_short("v.avi", 37, 40.0) is None  # 92.5%: a container's estimate may be that far off
    assert _cut_short("v.avi", 0, 2.0) is None  # under 3 frames short
    assert _cut_short("v.avi", 5, 0.0) is None and _cut_short("v.avi", 5, -1.0) is None  # no count
    assert _cut_short("v.avi", 5, float("nan")) is None
    assert _cut_short("v.avi", 35, 40.0) == ("v.avi: decoded 35 of the 40 frames its container announces; the "
                                             "file may be truncated")


def test_predict_warns_on_a_truncated_video_and_keeps_its_exit_code(tmp_path):
    whole, cut = _videos(tmp_path)
    base = ["predict", "--models", REPO / "models", "--no-detect", "--stages", "1", "--tta", "none",
            "--device", "cpu", "--threads", "1"]
    r = invoke(*base, cut)
    assert r.exit_code == 0, r.stderr
    n = len([ln for ln in r.stdout.splitlines() if ln.strip()])
    assert lines(r.stderr, "warning: ") == [
        f"warning: {cut}: decoded {n} of the 40 frames its container announces; the file may be truncated"]
    r = invoke(*base, whole)
    assert r.exit_code == 0 and "truncated" not in r.stderr, r.stderr
