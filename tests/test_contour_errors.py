"""scripts/contour_errors.py: jaw points moved by a known amount along or across the contour are reported as
exactly that, and the other regions as untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_script


def _write_predictions(path, manifest, lm):
    with open(path, "w") as f:
        f.writelines(json.dumps({"id": s.id, "image": s.image, "landmarks": p.tolist()}) + "\n"
                     for s, p in zip(manifest.samples, lm))


@pytest.mark.parametrize("along, across", [(0.05, 0.0), (0.0, 0.03), (-0.02, -0.04)])
def test_jaw_moves_along_and_across_the_contour_are_measured(data_dir, tmp_path, capsys, along, across):
    from facelm.evaluate import face_normaliser
    from facelm.manifest import load_manifest

    mod = load_script("contour_errors")
    m = load_manifest(data_dir)
    g = m.landmarks.astype(np.float64)
    norm, _ = face_normaliser(m, "inter-ocular")
    prev = np.concatenate([g[:, :1], g[:, :16]], 1)
    nxt = np.concatenate([g[:, 1:17], g[:, 16:17]], 1)
    t = (nxt - prev) / np.linalg.norm(nxt - prev, axis=-1, keepdims=True)
    n = np.stack([-t[..., 1], t[..., 0]], -1)
    outward = ((g[:, :17] - g[:, 27:36].mean(1, keepdims=True)) * n).sum(-1, keepdims=True) > 0
    n = np.where(outward, n, -n)
    p = g.copy()
    p[:, :17] += (along * t + across * n) * norm[:, None, None]
    _write_predictions(tmp_path / "p.jsonl", m, p)

    assert mod.main(["--data", str(data_dir), "--split", "all", str(tmp_path / "p.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["faces"] == len(m) and out["missing"] == 0
    assert out["jaw"]["along"] == pytest.approx(100 * abs(along), abs=0.01)
    assert out["jaw"]["across"] == pytest.approx(100 * abs(across), abs=0.01)
    np.testing.assert_allclose(out["jaw"]["along_mean_per_point"], 100 * along, atol=0.01)
    np.testing.assert_allclose(out["jaw"]["across_mean_per_point"], 100 * across, atol=0.01)
    assert out["regions"]["jaw"] == pytest.approx(100 * np.hypot(along, across), abs=0.01)
    assert all(out["regions"][k] == 0 for k in ("brows", "nose", "eyes", "mouth"))
    assert sum(b["faces"] for b in out["jaw"]["by_turn"]) == len(m)


def test_missing_faces_are_left_out_and_an_empty_split_is_a_usage_error(data_dir, tmp_path, capsys):
    from facelm.manifest import load_manifest

    mod = load_script("contour_errors")
    m = load_manifest(data_dir)
    lm = m.landmarks.astype(np.float64)
    with open(tmp_path / "p.jsonl", "w") as f:  # every face but the first
        f.writelines(json.dumps({"id": s.id, "image": s.image, "landmarks": p.tolist()}) + "\n"
                     for s, p in list(zip(m.samples, lm))[1:])
    assert mod.main(["--data", str(data_dir), "--split", "all", str(tmp_path / "p.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["missing"] == 1 and out["faces"] == len(m) - 1 and out["nme"] == 0
    with pytest.raises(SystemExit) as e:
        mod.main(["--data", str(data_dir), "--split", "nosuchsplit", str(tmp_path / "p.jsonl")])
    assert e.value.code == 2 and "nosuchsplit" in capsys.readouterr().err
