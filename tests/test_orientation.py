"""The orientation search can run the detector on shrunk patches (``pipeline.ORIENT_MAX_SIDE``, off by default):
on the astronaut it finds the same turn and square as on full-size patches, at a fraction of the cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.mark.parametrize("turn", [0, 90, 180])
def test_shrunk_orientation_patches_give_the_full_size_result(turn, monkeypatch):
    from facelm.detectors import create_detector
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models
    from facelm.runtime import pipeline as PL

    img = read_image(EXAMPLES / "astronaut.jpg")  # 512 x 512, the face about 200 px: its patch is shrunk
    img = np.ascontiguousarray(np.rot90(img, turn // 90))
    det = create_detector("auto")
    sizes: list[int] = []
    detect = det.detect

    def spy(image, *a, **k):
        sizes.append(max(image.shape[:2]))
        return detect(image, *a, **k)

    monkeypatch.setattr(det, "detect", spy)
    pair = load_models(MODELS, precision="fp32")
    out = {}
    assert PL.ORIENT_MAX_SIDE is None  # the default searches full-size patches
    shrunk = 160
    for side in (None, shrunk):
        monkeypatch.setattr(PL, "ORIENT_MAX_SIDE", side)
        sizes.clear()
        (f,) = Landmarker(pair, det, tta="none").predict_image(img).faces
        out[side] = f
        calls = sizes[1:]  # after the whole-image detection: the orientation search
        if side == shrunk:
            assert len(calls) == 4 and max(calls) <= side  # the upright vote again at the shrunk size, 3 turns
        else:
            assert len(calls) == 3 and max(calls) > shrunk
    a, b = out.values()
    iod = np.linalg.norm(a.landmarks[36] - a.landmarks[45])
    assert abs((a.angle - b.angle + 180) % 360 - 180) < 2.0
    assert np.linalg.norm(a.landmarks - b.landmarks, axis=1).mean() < 0.01 * iod
