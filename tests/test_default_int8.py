"""The shipped int8 models (models/cnn6.int8.onnx, models/cnn6r.int8.onnx): made from the float models beside them
(``scripts/export_int8.sh``), checked (<= 1% relative NME change on held-out human-labelled faces, recorded in
their metadata), small, and close to the float models on the example images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facelm.cli import app
from facelm.modelfile import read_onnx_meta

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
EXAMPLES = REPO / "examples"

#: the shipping limit of issue 15: the int8 NME may exceed the float one by at most 1% (relative)
MAX_NME_INCREASE = 0.01
#: int8 vs fp32 on the example images, mean point distance in % of the inter-ocular distance. One pass of each
#: stage (--no-level --tta none) measured 0.15% (astronaut) and 1.37% (camera man; stage 1 alone 0.09% and 0.66%);
#: the default pipeline 0.11% on the astronaut and 1.6-4.5% on the camera man, a small face looking down whose
#: levelled passes and second stage amplify any change (levelling itself moves its points by 37% there); on the
#: held-out 300-W faces the median is 0.22%.
AGREE_ONE_PASS = {"astronaut.jpg": 1.0, "camera.jpg": 2.5}
AGREE_DEFAULT = {"astronaut.jpg": 1.0, "camera.jpg": 6.0}


def _meta(name: str) -> dict:
    return read_onnx_meta(MODELS / name)


@pytest.mark.parametrize("arch", ["cnn6", "cnn6r"])
def test_shipped_int8_models_are_current_and_were_checked(arch):
    src, q = _meta(f"{arch}.onnx"), _meta(f"{arch}.int8.onnx")
    assert q["precision"] == "int8" and (q["arch"], q["stage"], q["scheme"]) == (src["arch"], src["stage"],
                                                                                src["scheme"])
    quant = q["quantization"]
    # made from the float model beside it: rerun scripts/export_int8.sh when cnn6.onnx/cnn6r.onnx change
    assert quant["source"]["file"] == f"{arch}.onnx" and quant["source"]["created"] == src["created"], \
        "stale int8 model: run scripts/export_int8.sh"
    # full 8-bit weights (7-bit ones cost the deeper stage 1 1.9% NME): exact with 32-bit int8 dot products; x86
    # CPUs without them run the activations at 7 bits instead (tests/test_int8_avx2.py, tests/test_precision.py)
    assert quant["reduce_range"] is False and quant["format"] == "QDQ"
    nme = quant["nme_check"]
    assert "w300" in nme["data"] and nme["split"] == "val" and nme["faces"] >= 100
    assert nme["normaliser"] == "inter-ocular"
    assert nme["relative_change"] <= MAX_NME_INCREASE and nme["relative_change_reference"] <= MAX_NME_INCREASE
    assert nme["measured_on"]["cpu"]
    e2e = quant["end_to_end"]["results"]
    assert {r["set"] for r in e2e} >= {"w300", "mtfl"}
    assert all(r["relative_change"] <= MAX_NME_INCREASE for r in e2e)
    assert q.get("predict_default", True) == src.get("predict_default", True)
    if arch == "cnn6":
        assert q["detector_box_maps"] == src["detector_box_maps"]


def test_int8_files_are_small():
    sizes = {f: (MODELS / f).stat().st_size for f in ("cnn6.int8.onnx", "cnn6r.int8.onnx")}
    assert sizes["cnn6.int8.onnx"] < 8e6 and sizes["cnn6r.int8.onnx"] < 11e6  # 6.9 M and 10.1 M parameters
    card = (MODELS / "README.md").read_text()
    assert "scripts/export_int8.sh" in card and "--precision" in card


def _landmarks(precision: str, image: str, **opts) -> np.ndarray:
    from facelm.detectors import create_detector
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models

    pair = load_models(MODELS, precision=precision)
    assert pair.precision == precision
    (face,) = Landmarker(pair, create_detector("auto"), **opts).predict_image(read_image(EXAMPLES / image)).faces
    return face.landmarks


@pytest.mark.parametrize("image", ["astronaut.jpg", "camera.jpg"])
def test_int8_and_fp32_agree_on_the_example_images(image):
    def dist(a, b):
        return 100 * np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(a[36] - a[45])

    one = {p: _landmarks(p, image, level=False, tta="none") for p in ("fp32", "int8")}
    assert 0 < dist(one["fp32"], one["int8"]) < AGREE_ONE_PASS[image]  # > 0: the int8 models really ran
    full = {p: _landmarks(p, image, tta="flip") for p in ("fp32", "int8")}
    assert dist(full["fp32"], full["int8"]) < AGREE_DEFAULT[image]


def test_default_predict_says_which_precision_and_why():
    r = CliRunner().invoke(app, ["predict", str(EXAMPLES / "astronaut.jpg")])
    assert r.exit_code == 0, r.stderr
    line = next(x for x in r.stderr.splitlines() if x.startswith("precision: "))
    assert line.startswith(("precision: int8 (auto: ", "precision: fp32 (auto: "))
    assert "cnn6.int8.onnx" in r.stderr if "int8 (auto" in line else "cnn6.onnx" in r.stderr
    assert len(json.loads(r.stdout)["faces"]) == 1
