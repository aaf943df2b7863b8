"""The Python API keeps the contract of docs/python.md: bad values raise one-line typed facelm errors
(``UsageError`` naming the keyword, at the call) instead of raw ``ValueError``/``TypeError``, are never replaced
by a default or read as something else, and odd but valid inputs (16-bit PIL images, ``(H, W, 1)`` arrays, a
1 x 100,000 image) give what their equivalents give, in bounded memory."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

import facelm
from facelm.detectors.base import Detection, FaceDetector

REPO = Path(__file__).resolve().parents[1]
PHOTO = str(REPO / "examples" / "astronaut.jpg")


@pytest.fixture(scope="module")
def lm():
    return facelm.Landmarker(device="cpu", threads=1, precision="fp32")


@pytest.fixture(scope="module")
def rgb():
    return cv2.cvtColor(cv2.imread(PHOTO), cv2.COLOR_BGR2RGB)


class ShapeDetector(FaceDetector):
    """Records the shape of every image it looks at; finds a face only in images of ``size`` (h, w)."""

    name = "shapes"
    live = True

    def __init__(self, size=None):
        self.looks: list[tuple[int, int]] = []
        self.size = size

    def detect(self, image, name=None, frame=None):
        self.looks.append(image.shape[:2])
        if image.shape[:2] != self.size:
            return []
        kp = np.array([[30.0, 20.0], [40.0, 21.0], [35.0, 26.0], [31.0, 31.0], [39.0, 31.0]])
        return [Detection(box=np.array([25.0, 12.0, 46.0, 38.0]), score=0.7, keypoints=kp)]


# -- 1. the diagonal looks of a long thin image --------------------------------------------------------------------

def test_a_long_thin_image_is_looked_at_on_a_bounded_canvas(monkeypatch):
    """1 x 100,000 pixels: the diagonal looks' canvas would be ~70,000 px square (15 GB); it holds at most about
    4x the image's pixels (the canvas sizes are recorded instead of allocated)."""
    from facelm.geometry import turn_matrix
    from facelm.runtime import orientation

    canvases = []

    def spy(image, degrees):
        m, (nw, nh) = turn_matrix(image.shape[1], image.shape[0], degrees)
        canvases.append(nw * nh)
        return np.zeros((min(nh, 64), min(nw, 64), 3), np.uint8), m

    monkeypatch.setattr(orientation, "turn_image", spy)
    h, w = 1, 100_000
    det = ShapeDetector()
    assert facelm.Landmarker(detector=det, precision="fp32", tta="none")(np.zeros((h, w, 3), np.uint8)) == []
    assert len(canvases) == 4 and max(canvases) <= 4.1 * w * h  # the 4 diagonal looks
    assert len(det.looks) == 8  # upright, 3 quarter turns, 4 diagonal ones


def test_a_shrunk_diagonal_look_maps_back_to_the_image():
    from facelm.detectors.boxmap import boxes_to_squares
    from facelm.geometry import apply_affine
    from facelm.runtime.orientation import find_turned_faces, look_matrix, turned_look, turned_square

    h, w = 4, 3000
    img = np.zeros((h, w, 3), np.uint8)
    look = turned_look(img, 45)
    assert look.shape[0] * look.shape[1] <= 4.1 * w * h
    m = look_matrix(45, w, h)
    corners = apply_affine(m, np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]]))
    assert (corners >= -1).all() and (corners[:, 0] <= look.shape[1] + 1).all()
    assert (corners[:, 1] <= look.shape[0] + 1).all()
    found = find_turned_faces(ShapeDetector(look.shape[:2]), img)
    assert found and {d.extra["turn_deg"] for d in found} <= {45, 135, 225, 315}
    box_map = {"cx": 0.0, "cy": 0.1, "side": 0.9}
    for d in found:
        sq, _ = turned_square(d, box_map)
        tsq = boxes_to_squares(d.extra["turned_box"][None], box_map)[0]
        dm = d.extra["look_matrix"]
        scale = math.sqrt(abs(np.linalg.det(dm[:, :2])))
        assert scale < 0.5
        assert np.allclose(apply_affine(dm, sq[None, :2])[0], tsq[:2])
        assert sq[2] * scale == pytest.approx(tsq[2])  # the square's side in image pixels


# -- 2. box_map dicts get the file form's checks --------------------------------------------------------------------

@pytest.mark.parametrize("box_map", [{}, {"cx": 100, "cy": 0, "side": 1}, {"cx": 0, "cy": 0, "side": -1},
                                     {"cx": "a", "cy": 0, "side": 1}, {"cx": float("nan"), "cy": 0, "side": 1},
                                     {"cx": True, "cy": 0, "side": 1}, "", 5])
def test_a_bad_box_map_is_a_usage_error_at_construction(box_map):
    with pytest.raises(facelm.UsageError, match="`box_map`"):
        facelm.Landmarker(box_map=box_map, precision="fp32")


# -- 3. boxes of a call ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("boxes", [[[1, 2, 3], [1, 2, 3, 4]], "1,2,3,4", {"a": 1}, [["a", 1, 2, 3]],
                                   [[-1e300, -1e300, 1e300, 1e300]], [[10, 10, 5, 5]], [[0, 0, 0, 0]],
                                   [[0, 0, 1e12, 1e12]], [[0, 0, np.nan, 9]], np.zeros((2, 2)), np.ones((1, 8)),
                                   np.ones((1, 2, 4))])
def test_bad_boxes_are_a_usage_error_naming_boxes(lm, rgb, boxes):
    with pytest.raises(facelm.UsageError, match="`boxes`"):
        lm(rgb, boxes=boxes)


def test_good_boxes_still_work(lm, rgb):
    assert lm(rgb, boxes=[]) == []
    assert len(lm(rgb, boxes=[[177.0, 82.0, 269.0, 174.0]])) == 1


# -- 4. empty paths are not the current folder ----------------------------------------------------------------------

def test_empty_paths_are_usage_errors(lm, monkeypatch, tmp_path):
    from facelm.sources import iter_sources

    (tmp_path / "a.jpg").write_bytes(Path(PHOTO).read_bytes())
    monkeypatch.chdir(tmp_path)
    for sources in ("", [""], ("a.jpg", "")):
        with pytest.raises(facelm.UsageError, match="empty path"):
            lm.batch(sources)
    (item,) = iter_sources([""])  # a lazy source (a generator, the CLI): one error record, not the folder
    assert item.error and "empty path" in item.error
    with pytest.raises(facelm.UsageError, match="`models`"):
        facelm.Landmarker(models="")
    with pytest.raises(facelm.UsageError, match="`detector_model`"):
        facelm.Landmarker(detector_model="")


# -- 5. 16-bit PIL images ---------------------------------------------------------------------------------------------

def test_a_16_bit_pil_image_gives_what_the_file_gives(lm, tmp_path):
    pil = pytest.importorskip("PIL.Image")
    gray = cv2.imread(PHOTO, cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 257
    p = tmp_path / "g16.png"
    cv2.imwrite(str(p), gray)
    want = [f.to_dict() for f in lm(p)]
    assert len(want) == 1
    img = pil.open(p)
    assert img.mode.startswith("I")
    assert [f.to_dict() for f in lm(img)] == want
    assert [f.to_dict() for f in lm(img.convert("I"))] == want


# -- 6. batch checks its arguments at the call ------------------------------------------------------------------------

@pytest.mark.parametrize("vid_stride", [0, -2, "a", 1.7, True, None])
def test_a_bad_vid_stride_is_a_usage_error_at_the_call(lm, vid_stride):
    with pytest.raises(facelm.UsageError, match="`vid_stride`"):
        lm.batch(PHOTO, vid_stride=vid_stride)  # not iterated


@pytest.mark.parametrize("sources", [5, None, 2.5])
def test_sources_that_are_no_images_nor_iterables_are_usage_errors_at_the_call(lm, sources):
    with pytest.raises(facelm.UsageError, match="`sources`"):
        lm.batch(sources)


def test_bytes_and_a_pil_image_are_one_image_each(lm):
    pil = pytest.importorskip("PIL.Image")
    want = [f.to_dict() for f in lm(PHOTO)]
    (r,) = list(lm.batch(Path(PHOTO).read_bytes()))
    assert r.error is None and [f.to_dict() for f in r] == want
    (r,) = list(lm.batch(pil.open(PHOTO)))
    assert r.error is None and [f.to_dict() for f in r] == want


# -- 7. the smaller keywords ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [({"stages": "2"}, r"`stages` must be the int 1 or 2.*'2'"),
                                       ({"stages": 2.0}, "`stages`"), ({"stages": True}, "`stages`"),
                                       ({"batch": 2.5}, "`batch` must be an int"), ({"batch": True}, "`batch`"),
                                       ({"workers": 1.5}, "`workers`"), ({"threads": "2"}, "`threads`")])
def test_counts_and_stages_must_be_ints(kw, match):
    with pytest.raises(facelm.UsageError, match=match):
        facelm.Landmarker(precision="fp32", **kw)


def test_grayscale_arrays_and_the_error_of_a_bad_array(lm, rgb):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    want = [f.to_dict() for f in lm(gray)]
    assert want and [f.to_dict() for f in lm(gray[:, :, None])] == want
    with pytest.raises(facelm.UsageError, match=r"float64 of shape \(20, 30\)$"):
        lm(np.zeros((20, 30)))
    with pytest.raises(facelm.UsageError, match="`image`"):
        lm([[1, 2], [3]])


def test_a_bad_boxes_kind_is_refused_without_boxes_too(lm, rgb):
    with pytest.raises(facelm.UsageError, match="`boxes_kind`"):
        lm(rgb, boxes_kind="bogus")


def test_one_scheme_map_path_is_one_file(monkeypatch):
    import facelm.scheme_maps

    read = []

    def fake(path, *a, **k):
        read.append(str(path))
        raise facelm.UsageError(f"{path}: stop here")

    monkeypatch.setattr(facelm.scheme_maps, "load_map_file", fake)
    for maps in ("extra-map.json", Path("extra-map.json")):
        with pytest.raises(facelm.UsageError, match="stop here"):
            facelm.Landmarker(scheme_maps=maps, precision="fp32")
    assert read == ["extra-map.json", "extra-map.json"]
