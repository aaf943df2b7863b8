"""scripts/occlude_set.py: a prepared set's val faces partly covered, readable like the original."""

import json

import cv2
import numpy as np

from facelm.manifest import load_manifest
from tests.conftest import load_script


def test_occluded_set_covers_each_val_face_and_keeps_the_rest(data_dir, tmp_path):
    occ = load_script("occlude_set")
    out = tmp_path / "occ"
    n = occ.occlude_set(data_dir, out, seed=3)
    src, new = load_manifest(data_dir), load_manifest(out)
    assert [s.id for s in new.samples] == [s.id for s in src.samples]
    np.testing.assert_array_equal(new.landmarks, src.landmarks)
    val = [i for i, s in enumerate(src.samples) if s.split == "val"]
    assert n == len({str(src.image_path(i)) for i in val}) > 0
    listed = (out / "val_images.txt").read_text().split()
    assert len(listed) == n
    for i, s in enumerate(src.samples):
        if s.split != "val":
            assert new.image_path(i) == src.image_path(i)  # train faces keep their images
            continue
        a = cv2.imread(str(src.image_path(i))).astype(int)
        b = cv2.imread(str(new.image_path(i))).astype(int)
        assert str(new.image_path(i)) in listed and a.shape == b.shape
        changed = np.abs(a - b).sum(-1) > 40
        x1, y1, x2, y2 = (int(round(v)) for v in s.box)
        inside = changed[max(y1, 0):y2 + 1, max(x1, 0):x2 + 1].sum()
        box_area = (x2 - x1) * (y2 - y1)
        assert inside > 0.02 * box_area  # a real patch over the face (>= 1/16 of the box, up to JPEG noise)
        outside = changed.sum() - inside
        assert outside < 0.05 * changed.size  # nothing much changed away from the faces
    assert json.loads((out / "prepare.json").read_text()) == json.loads((data_dir / "prepare.json").read_text())
    assert len(new.split("val")) == len(val)
