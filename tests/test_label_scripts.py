"""scripts/fit_label_shift.py and scripts/fit_map_offsets.py: the two calibrations of the default models measure
what they say (labels moved by a known amount move the result by exactly that amount)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def pair(data_dir, tmp_path_factory):
    """1-step tiny stage-1 (cnn6) and stage-2 (cnn6r) models of the synthetic set, exported as a models folder."""
    from facelm.config import TrainConfig
    from facelm.export import export_onnx
    from facelm.train import train

    root = tmp_path_factory.mktemp("pair")
    for arch in ("cnn6", "cnn6r"):
        cfg = TrainConfig(data=str(data_dir), out=str(root / arch), arch=arch, steps=1, batch_size=4, width=0.125,
                          threads=1, val_every=100, warmup=0).filled()
        train(cfg)
        export_onnx(root / arch / "best.pt", root / "models" / f"{arch}.onnx")
    return root


def _moved_copy(data_dir, dest, move):
    """A copy of a prepared folder whose labels are ``move(landmarks (N, L, 2)) -> landmarks``."""
    from facelm.manifest import load_manifest, write_manifest

    shutil.copytree(data_dir, dest)
    m = load_manifest(dest)
    lm = move(m.landmarks.astype(np.float64))
    write_manifest(m.path, [s.model_copy(update={"landmarks": lm[i].tolist()}) for i, s in enumerate(m.samples)])
    return dest


def test_fit_label_shift_measures_a_known_move(pair, data_dir, tmp_path, capsys):
    from facelm.schemes import get_scheme

    mod = load_script("fit_label_shift")
    ck = str(pair / "cnn6" / "best.pt")
    assert mod.main([ck, str(data_dir), "--split", "all"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert base["faces"] == 32 and base["unit"] == "eye-centre distance"

    sch = get_scheme("300w68")

    def move(lm):
        le, re = sch.eye_centres(lm)
        return lm + 0.03 * (re - le)[:, None]

    moved = _moved_copy(data_dir, tmp_path / "moved", move)
    assert mod.main([ck, str(moved), "--split", "all"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label_shift"] - base["label_shift"] == pytest.approx(0.03, abs=2e-4)
    assert out["across_eye_line"] == pytest.approx(base["across_eye_line"], abs=2e-4)
    assert mod.main([ck, str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err


def test_fit_label_shift_per_point_measures_a_known_move_of_some_points(pair, data_dir, tmp_path, capsys):
    """--per-point: the jaw (a set closed under the flip) moved along the eye line moves only the jaw's values,
    by exactly that much; a move the same on both sides of the face after mirroring (across) is learnable and
    leaves them alone."""
    from facelm.schemes import get_scheme

    mod = load_script("fit_label_shift")
    ck = str(pair / "cnn6" / "best.pt")
    assert mod.main([ck, str(data_dir), "--split", "all", "--per-point"]) == 0
    base = np.array(json.loads(capsys.readouterr().out)["per_point"])
    assert base.shape == (68, 2)
    sch = get_scheme("300w68")

    def move(lm):
        le, re = sch.eye_centres(lm)
        u = re - le
        out = lm.copy()
        out[:, :17] += 0.02 * u[:, None]  # along the eye line: the same side for the jaw's mirror pairs
        out[:, 17:27] += 0.03 * np.stack([-u[:, 1], u[:, 0]], 1)[:, None]  # brows down the face: symmetric
        return out

    moved = _moved_copy(data_dir, tmp_path / "moved_pp", move)
    assert mod.main([ck, str(moved), "--split", "all", "--per-point"]) == 0
    got = np.array(json.loads(capsys.readouterr().out)["per_point"])
    want = base.copy()
    want[:17, 0] += 0.02
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_fit_map_offsets_recovers_offsets_built_into_the_labels(pair, data_dir, tmp_path, capsys):
    from facelm.crops import cache_landmarks
    from facelm.manifest import load_manifest
    from facelm.manifest_predict import load_onnx_model, onnx_predict_manifest
    from facelm.modelfile import read_onnx_meta
    from facelm.schemes import get_scheme

    mod = load_script("fit_map_offsets")
    models = pair / "models"
    m = load_manifest(data_dir)
    metas = [read_onnx_meta(models / f) for f in ("cnn6.onnx", "cnn6r.onnx")]
    s1, s2 = (load_onnx_model(models / f, threads=1)[0] for f in ("cnn6.onnx", "cnn6r.onnx"))
    p1 = onnx_predict_manifest(s1, metas[0], m)
    pred = onnx_predict_manifest(s2, metas[1], m, cache_landmarks(m.cache_matrix, p1))
    # labels = the pair's own reading plus known offsets in each face's eye frame: the fit must give them back
    rng = np.random.default_rng(0)
    want = rng.uniform(-0.05, 0.05, (68, 2))
    le, re = get_scheme("300w68").eye_centres(pred)
    u = re - le
    v = np.stack([-u[:, 1], u[:, 0]], 1)
    labels = pred + want[None, :, :1] * u[:, None] + want[None, :, 1:] * v[:, None]
    moved = _moved_copy(data_dir, tmp_path / "moved", lambda lm: labels)
    assert mod.main([str(moved), "--models", str(models), "--split", "all"]) == 0
    out = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(np.array(out["offsets"], dtype=float), want, atol=2e-4)
    assert out["faces"] == 32 and out["nme_after"] < 0.05 < out["nme_before"]
