"""scripts/pseudo_label.py: 68-point readings of a 5-point set's train faces are kept only where they map onto the
human points and are trusted; the CSV it writes is a 68-point set for ``facelm prepare``."""

from __future__ import annotations

import json

import cv2
import numpy as np

from conftest import load_script
from facelm.prepare import PrepareOptions, prepare
from facelm.scheme_maps import get_map
from facelm.synthetic import template_68


def test_readings_are_kept_where_they_agree_with_the_human_points(tmp_path, capsys):
    shape = template_68() * 80 + 20  # a 68-point face in a 120-px image
    to5 = get_map("300w68", "5pt")
    eye = np.linalg.norm(to5.apply(shape)[0] - to5.apply(shape)[1])
    rows, readings = [], []
    # (shift of the human 5 points in eye distances, quality of the reading): agrees / untrusted / disagrees
    cases = [(0.0, 0.9), (0.0, 0.3), (0.2, 0.9)]
    for i, (shift, quality) in enumerate(cases):
        img = tmp_path / f"f{i}.png"
        cv2.imwrite(str(img), np.full((120, 120, 3), 128, np.uint8))
        five = to5.apply(shape) + [shift * eye, 0.0]
        rows.append(f"{img}," + ",".join(f"{v:.3f}" for v in five.reshape(-1)))
        readings.append({"image": str(img), "faces": [{"landmarks": shape.tolist(), "quality": quality}]})
    (tmp_path / "five.csv").write_text("image," + ",".join(f"x{i},y{i}" for i in range(5)) + "\n"
                                       + "\n".join(rows) + "\n")
    prepare(PrepareOptions(source=tmp_path / "five.csv", out=tmp_path / "set5", fmt="csv", scheme="5pt",
                           workers=1))
    out = tmp_path / "pp"
    out.mkdir()
    # the slow part, facelm predict, is reused from OUT when present
    (out / "set5.predict.jsonl").write_text("\n".join(json.dumps(r) for r in readings) + "\n")
    assert load_script("pseudo_label").main([str(tmp_path / "set5"), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["faces"] == report["matched"] == 3 and report["kept"] == 1
    lines = (out / "set5.68.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith(str(tmp_path / "f0.png"))
    assert np.allclose(np.array(lines[1].split(",")[1:], float).reshape(68, 2), shape, atol=0.01)
    prepare(PrepareOptions(source=out / "set5.68.csv", out=tmp_path / "set68", fmt="csv", workers=1))
    assert json.loads((tmp_path / "set68" / "manifest.jsonl").read_text().splitlines()[0])["scheme"] == "300w68"


def test_a_68_point_set_gets_the_reading_in_place_of_its_labels_where_they_agree(tmp_path, capsys):
    """Machine-labelled 68-point sets (UTKFace's dlib outputs, the YouTube frames) go through the identity map: the
    pair's reading replaces the set's label where the two lie within --max-nme of each other."""
    shape = template_68() * 80 + 20
    eye = np.linalg.norm(shape[36] - shape[45])
    rows, readings = [], []
    for i, shift in enumerate([0.03, 0.2]):  # within 8% of the label: kept; 20% off: dropped
        img = tmp_path / f"f{i}.png"
        cv2.imwrite(str(img), np.full((120, 120, 3), 128, np.uint8))
        rows.append(f"{img}," + ",".join(f"{v:.3f}" for v in (shape + [shift * eye, 0.0]).reshape(-1)))
        readings.append({"image": str(img), "faces": [{"landmarks": shape.tolist(), "quality": 0.9}]})
    (tmp_path / "l68.csv").write_text("image," + ",".join(f"x{i},y{i}" for i in range(68)) + "\n"
                                      + "\n".join(rows) + "\n")
    prepare(PrepareOptions(source=tmp_path / "l68.csv", out=tmp_path / "set", fmt="csv", workers=1))
    out = tmp_path / "pp"
    out.mkdir()
    (out / "set.predict.jsonl").write_text("\n".join(json.dumps(r) for r in readings) + "\n")
    assert load_script("pseudo_label").main([str(tmp_path / "set"), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["matched"] == 2 and report["kept"] == 1
    lines = (out / "set.68.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith(str(tmp_path / "f0.png"))
    # the reading, not the shifted label
    assert np.allclose(np.array(lines[1].split(",")[1:], float).reshape(68, 2), shape, atol=0.01)


def test_bad_thresholds_exit_2(tmp_path, capsys):
    assert load_script("pseudo_label").main([str(tmp_path), "--out", str(tmp_path), "--max-nme", "0"]) == 2
    assert "--max-nme" in capsys.readouterr().err
