"""Landmark schemes: flip permutations and normaliser points checked against real annotations.

Real data comes from ../shared/data (tests skip when it is absent). Shapes are put in an eye-centred frame
(eye line of the scheme's angle normaliser horizontal, inter-eye distance 1) before comparing, so the numbers
below are in units of that distance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facelm.datasets import RawFace, read_faces, read_hrnet_csv_annotations
from facelm.schemes import get_scheme, list_schemes, load_scheme_file

BUILTIN = ["300w68", "aflw19", "cofw29", "wflw98", "5pt"]


# ------------------------------------------------------------------------------------------------------------
# helpers


def _faces(path: Path, fmt: str = "auto") -> np.ndarray:
    return np.array([f.landmarks for f in read_faces(path, fmt) if isinstance(f, RawFace)])


_SHAPES: dict[str, list[tuple[str, np.ndarray]]] = {}


def _shapes(shared_data, scheme: str) -> list[tuple[str, np.ndarray]]:
    """Real annotations of a scheme: (label, (N, L, 2) array), read once per test session."""
    if scheme not in _SHAPES:
        _SHAPES[scheme] = _load_shapes(shared_data, scheme)
    return _SHAPES[scheme]


def _load_shapes(shared_data, scheme: str) -> list[tuple[str, np.ndarray]]:
    if scheme == "300w68":
        ann = shared_data("fixtures", "300w-annotations")
        return [(n, np.array([r["landmarks"] for r in read_hrnet_csv_annotations(ann / f"{n}.csv")]))
                for n in ("300w_valid", "300w_test")]
    if scheme == "cofw29":
        return [("mmpose-cofw", _faces(shared_data("fixtures", "mmpose", "cofw"))),
                ("helen29", _faces(shared_data("helen29-train")))]
    if scheme == "aflw19":
        return [("mmpose-aflw", _faces(shared_data("fixtures", "mmpose", "aflw")))]
    if scheme == "wflw98":
        return [("mmpose-wflw", _faces(shared_data("fixtures", "mmpose", "wflw")))]
    if scheme == "5pt":
        root = shared_data("mtfl-train")
        return [("mtfl-frontal", np.array([f.landmarks for f in read_faces(root)
                                           if isinstance(f, RawFace) and f.attrs["pose"] == 3]))]
    raise AssertionError(scheme)


def _eye_frame(scheme, shapes: np.ndarray) -> np.ndarray:
    """Translate/rotate/scale so that the scheme's eye centres sit at (-0.5, 0) and (0.5, 0)."""
    a, b = scheme.eye_centres(shapes)
    v = b - a
    d = np.linalg.norm(v, axis=-1)
    cos, sin = v[:, 0] / d, v[:, 1] / d
    x = shapes - ((a + b) / 2)[:, None]
    rot = np.stack([x[..., 0] * cos[:, None] + x[..., 1] * sin[:, None],
                    -x[..., 0] * sin[:, None] + x[..., 1] * cos[:, None]], axis=-1)
    return rot / d[:, None, None]


def _flip_residuals(scheme, shapes: np.ndarray) -> np.ndarray:
    """(N, L): distance between each point and the mirrored shape's point of the same index, after the best
    horizontal offset. For a right permutation and a near-frontal face every value is small; a pair that is
    wrong (two points on the same side) gives about the eye distance."""
    s = _eye_frame(scheme, np.asarray(shapes, dtype=np.float64))
    m = scheme.flip(s, 1.0)  # width 1: x -> -x, indices permuted
    m[..., 0] += np.median(s[..., 0] - m[..., 0], axis=1)[:, None]
    return np.linalg.norm(s - m, axis=-1)


def _near_frontal(scheme, shapes: np.ndarray, frac: float = 0.3) -> np.ndarray:
    """The most symmetric faces (per-face median residual, robust to a few wrong pairs)."""
    per_face = np.median(_flip_residuals(scheme, shapes), axis=1)
    k = max(1, int(np.ceil(frac * len(shapes))))
    return shapes[np.argsort(per_face)[:k]]


# ------------------------------------------------------------------------------------------------------------
# structure


@pytest.mark.parametrize("name", BUILTIN)
def test_flip_twice_is_identity(name):
    s = get_scheme(name)
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 200, (3, s.num_landmarks, 2))
    np.testing.assert_allclose(s.flip(s.flip(lm, 201), 201), lm)
    assert all(s.flip_perm[s.flip_perm[i]] == i for i in range(s.num_landmarks))
    assert len(s.names) == len(set(s.names)) == s.num_landmarks


def test_builtin_schemes_registered():
    assert set(BUILTIN) <= set(list_schemes())


# ------------------------------------------------------------------------------------------------------------
# flip pairs against real faces


FLIP_CASES = ["300w68", "aflw19", "wflw98", "5pt", "cofw29"]


@pytest.mark.parametrize("name", FLIP_CASES)
def test_flip_pairs_match_real_faces(shared_data, name):
    s = get_scheme(name)
    for label, shapes in _shapes(shared_data, name):
        frontal = _near_frontal(s, shapes) if len(shapes) > 10 else shapes
        med = np.median(_flip_residuals(s, frontal), axis=0)
        bad = {i: round(float(med[i]), 2) for i in range(s.num_landmarks) if med[i] > 0.4}
        assert not bad, f"{name} on {label}: points whose mirrored partner is far away: {bad}"
        # each pair joins an image-left point with an image-right point (opposite sides of the midline)
        x = np.median(_eye_frame(s, frontal)[..., 0], axis=0)
        same_side = [(i, j) for i, j in s.flip_pairs if x[i] * x[j] > 0]
        assert not same_side, f"{name} on {label}: flip pairs on one side of the face: {same_side}"


# ------------------------------------------------------------------------------------------------------------
# normalisers and named points


@pytest.mark.parametrize("name", BUILTIN)
def test_eye_centres_left_to_right(shared_data, name):
    """Group a of the angle normaliser is on the image left of upright faces (the documented convention)."""
    s = get_scheme(name)
    for label, shapes in _shapes(shared_data, name):
        a, b = s.eye_centres(shapes)
        assert np.mean(a[:, 0] < b[:, 0]) > 0.95, label


def test_300w68_inter_pupil_below_inter_ocular(shared_data):
    s = get_scheme("300w68")
    for label, shapes in _shapes(shared_data, "300w68"):
        ipd = s.normaliser_distance(shapes, "inter-pupil")
        iod = s.normaliser_distance(shapes, "inter-ocular")
        assert len(shapes) in (689, 600)
        assert np.all(ipd < iod), label
        assert 0.6 < np.median(ipd / iod) < 0.9, label  # eye centres ~ 3/4 of the outer-corner distance


@pytest.mark.parametrize("name", ["aflw19", "cofw29", "wflw98"])
def test_inter_pupil_below_inter_ocular(shared_data, name):
    s = get_scheme(name)
    for label, shapes in _shapes(shared_data, name):
        ipd = s.normaliser_distance(shapes, "inter-pupil")
        iod = s.normaliser_distance(shapes, "inter-ocular")
        assert np.all(ipd < iod), label


def test_cofw29_pupils_and_outer_corners(shared_data):
    """(a) 16/17 are the pupils (between the corners of each eye, near their middle), 8/9 the outer corners."""
    s = get_scheme("cofw29")
    for label, shapes in _shapes(shared_data, "cofw29"):
        f = np.median(_eye_frame(s, _near_frontal(s, shapes) if len(shapes) > 10 else shapes), axis=0)
        x = f[:, 0]
        assert x[8] < x[16] < x[10] < 0 < x[11] < x[17] < x[9], (label, x[[8, 16, 10, 11, 17, 9]])
        assert abs(x[16] - (x[8] + x[10]) / 2) < 0.1 and abs(x[17] - (x[9] + x[11]) / 2) < 0.1, label
        # outer corners are the extreme eye points; 12/13 and 14/15 are the lids of one eye each
        assert x[8] == min(x[[8, 10, 12, 13, 16]]) and x[9] == max(x[[9, 11, 14, 15, 17]]), label
        assert f[12, 1] < f[16, 1] < f[13, 1] and f[14, 1] < f[17, 1] < f[15, 1], label
        assert abs(x[12] - x[13]) < 0.1 and abs(x[14] - x[15]) < 0.1, label


def test_aflw19_eye_centres_and_sides(shared_data):
    """(b) 7/10 are eye centres between 6-8 and 9-11, 6/11 outer corners, 0 is on the image left of 5."""
    s = get_scheme("aflw19")
    for label, shapes in _shapes(shared_data, "aflw19"):
        for lm in shapes:
            x = lm[:, 0]
            assert x[6] < x[7] < x[8] < x[9] < x[10] < x[11], (label, x[6:12])
            assert x[0] < x[5] and x[0] < x[1] < x[2] < x[3] < x[4] < x[5], label
            assert x[12] < x[13] < x[14] and x[15] < x[16] < x[17], label
            assert lm[18, 1] > lm[16, 1] > lm[13, 1], label  # chin below mouth below nose


def test_5pt_image_left_first(shared_data):
    s = get_scheme("5pt")
    (label, shapes), = _shapes(shared_data, "5pt")
    assert np.mean(shapes[:, 0, 0] < shapes[:, 1, 0]) > 0.99
    assert np.mean(shapes[:, 3, 0] < shapes[:, 4, 0]) > 0.99
    assert s.normaliser_groups("inter-ocular") == ((0,), (1,))


# ------------------------------------------------------------------------------------------------------------
# custom schemes


def _custom(name: str) -> dict:
    return {"name": name, "num_landmarks": 6, "names": ["le", "re", "n", "ml", "mr", "c"],
            "flip_pairs": [[0, 1], [3, 4]], "normalisers": {"inter-ocular": [[0], [1]]}}


def test_custom_scheme_json_and_toml(tmp_path):
    js = tmp_path / "s6.json"
    js.write_text(json.dumps(_custom("test-custom6-json")))
    s = load_scheme_file(js, register=False)
    assert s.num_landmarks == 6 and s.flip_perm == (1, 0, 2, 4, 3, 5)
    assert s.normaliser_groups("inter-ocular") == ((0,), (1,))
    toml = tmp_path / "s6.toml"
    toml.write_text('name = "test-custom6-toml"\nnum_landmarks = 6\nflip_pairs = [[0, 1], [3, 4]]\n'
                    "[normalisers]\ninter-ocular = [[0], [1]]\ninter-pupil = [[0, 3], [1, 4]]\n")
    t = load_scheme_file(toml, register=False)
    assert t.flip_perm == s.flip_perm and t.names[0] == "p0"
    assert t.angle_normaliser == "inter-pupil"
    lm = np.arange(12, dtype=float).reshape(6, 2)
    np.testing.assert_allclose(t.flip(t.flip(lm, 50), 50), lm)
    assert get_scheme(str(js)).name == "test-custom6-json"  # a file path works wherever a name does


@pytest.mark.parametrize("pairs", [[[0, 1], [1, 2]], [[0, 9]], [[0, 1, 2]]])
def test_custom_scheme_rejects_bad_permutation(tmp_path, pairs):
    d = _custom("test-bad")
    d["flip_pairs"] = pairs
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="not a valid landmark scheme"):
        load_scheme_file(p, register=False)
