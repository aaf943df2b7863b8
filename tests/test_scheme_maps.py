import json
from dataclasses import replace

import numpy as np
import pytest

from facelm.errors import UsageError
from facelm.scheme_maps import SchemeMap, get_map, has_map, load_map_file
from facelm.schemes import get_scheme
from facelm.synthetic import template_68
from facelm.train_data import m_template, pseudo_shapes


def test_68_to_5pt_map_is_the_documented_one():
    a = get_map("300w68", "5pt").matrix
    assert a.shape == (5, 68)
    np.testing.assert_allclose(a.sum(1), 1.0)
    assert set(np.flatnonzero(a[0])) == set(range(36, 42)) and set(np.flatnonzero(a[1])) == set(range(42, 48))
    assert [np.flatnonzero(a[k]).tolist() for k in (2, 3, 4)] == [[30], [48], [54]]


def test_identity_map_and_unmapped_points_are_nan():
    ident = get_map("300w68", "300w68")
    np.testing.assert_array_equal(ident.matrix, np.eye(68))
    m = get_map("300w68", "cofw29")
    out = m.apply(template_68()[None])
    assert out.shape == (1, 29, 2)
    assert np.isnan(out[0, ~m.mapped]).all() and np.isfinite(out[0, m.mapped]).all()
    assert 10 <= m.mapped.sum() < 29


def test_map_respects_flips():
    """A x flip of a 68-point face, mapped, equals the mapped face flipped with the target scheme's permutation
    (the point correspondence; the offsets describe annotation habits, which need not be mirror-symmetric)."""
    for target in ("5pt", "cofw29", "aflw19", "wflw98"):
        m = replace(get_map("300w68", target), offsets=None)
        lm = template_68() * 100
        flipped = get_scheme("300w68").flip(lm, 100)
        a = m.apply(flipped)
        b = get_scheme(target).flip(m.apply(lm), 100)
        np.testing.assert_allclose(a, b, atol=1e-9)


#: the usual WFLW-98 -> 300W-68 correspondence (the 98-point index of each 68-point point), as published with WFLW
#: tools: even jaw points, the upper brows, nose, six of each eye's eight points, both lips
_WFLW_TO_68 = (list(range(0, 33, 2)) + list(range(33, 38)) + list(range(42, 47)) + list(range(51, 60))
               + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75] + list(range(76, 96)))


def test_68_to_wflw98_is_the_usual_correspondence_read_backwards():
    m = get_map("300w68", "wflw98")
    assert len(_WFLW_TO_68) == 68
    for i, j in enumerate(_WFLW_TO_68):
        assert m.points[j] == (i,), (i, j)
    assert m.points[1] == (0, 1) and m.points[31] == (15, 16)  # odd jaw points: the mean of their neighbours
    assert m.points[62] == (37, 38) and m.points[74] == (46, 47)  # eye lids' middle points
    assert m.points[96] == tuple(range(36, 42)) and m.points[97] == tuple(range(42, 48))  # pupils
    assert [j for j in range(98) if not m.points[j]] == [38, 39, 40, 41, 47, 48, 49, 50]  # lower brow edges


def test_68_to_aflw19_is_the_documented_one():
    m = get_map("300w68", "aflw19")
    names = get_scheme("aflw19").names
    got = dict(zip(names, m.points))
    assert got["right_brow_outer"] == (17,) and got["left_brow_outer"] == (26,)  # subject's right = image left
    assert got["right_eye_centre"] == tuple(range(36, 42)) and got["left_eye_outer"] == (45,)
    assert got["nose_tip"] == (30,) and got["nose_right"] == () and got["nose_left"] == ()
    assert got["mouth_right"] == (48,) and got["mouth_centre"] == (62, 66) and got["chin"] == (8,)


@pytest.mark.parametrize("scheme,tol", [("aflw", 0.08), ("wflw", 0.08), ("cofw", 0.08)])
def test_default_models_mapped_onto_real_annotations(shared_data, scheme, tol):
    """The default models' 68 points, mapped, land on the human AFLW-19 / WFLW-98 / COFW-29 points of the
    fixture faces (mmpose's test files: 2, 4 and 2 faces): per face, the mean error over the mapped points is
    below ``tol`` of the set's inter-ocular distance (measured: AFLW 4.6-5.8%, WFLW 5.2-5.9%, COFW 3.6-5.6%;
    WFLW's mostly the jaw, whose 300-W and WFLW contours differ). A map with sides swapped is far off."""
    from facelm import Landmarker
    from facelm.datasets import RawFace, read_faces

    folder = shared_data("fixtures", "mmpose", scheme)
    faces = [f for f in read_faces(folder / f"test_{scheme}.json") if isinstance(f, RawFace)]
    lm = Landmarker(threads=1)
    target = faces[0].scheme
    m, sch = get_map("300w68", target), get_scheme(target)
    a, b = sch.normaliser_groups("inter-ocular")
    for f in faces:
        gt = np.asarray(f.landmarks, float)
        got = lm(f.image)
        centre = np.nanmean(gt, 0)
        pred = min(got, key=lambda g: np.linalg.norm(g.landmarks.mean(0) - centre)).landmarks
        err = np.linalg.norm(m.apply(pred) - gt, axis=1)[m.mapped]
        iod = np.linalg.norm(gt[list(a)].mean(0) - gt[list(b)].mean(0))
        assert np.nanmean(err) / iod < tol, (f.image, np.nanmean(err) / iod)


def test_missing_map_names_both_schemes_and_how_to_add_one(no_aflw19_map):
    assert not has_map("300w68", "aflw19")
    with pytest.raises(UsageError, match=r"'300w68'.*'aflw19'.*map file"):
        get_map("300w68", "aflw19")


def test_bad_map_indices_fail_when_the_map_is_made(tmp_path):
    with pytest.raises(ValueError, match="outside 0..67"):
        SchemeMap("300w68", "5pt", ((1,), (2,), (3,), (4,), (99,)))
    with pytest.raises(ValueError, match="5 points"):
        SchemeMap("300w68", "5pt", ((1,), (2,)))
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"from": "300w68", "to": "5pt", "points": [[1], [2], [3], [4], [68]]}))
    with pytest.raises(UsageError, match="bad.json.*outside"):
        load_map_file(p, register=False)


def test_user_map_from_toml(tmp_path):
    p = tmp_path / "eyes.toml"
    p.write_text('from = "300w68"\nto = "5pt"\npoints = [[36, 39], [42, 45], [30], [], []]\n')
    m = load_map_file(p, register=False)
    assert m.mapped.tolist() == [True, True, True, False, False]
    assert m.matrix[0, 36] == 0.5


def test_pseudo_shapes_recover_a_similarity_exactly():
    """A face that *is* the template under a similarity gets back the template under that similarity."""
    tpl = m_template(template_68()[None] * 50, get_scheme("300w68"))
    m = get_map("300w68", "5pt")
    ang, k, t = np.radians(37.0), 80.0, np.array([60.0, 45.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    face68 = (tpl * k) @ r.T + t
    labels = m.apply(face68)[None]
    mask = np.ones((1, 5), bool)
    mask[0, 3] = False  # one point unusable: the fit uses the other four
    got = pseudo_shapes(np.nan_to_num(labels), mask, m, tpl)
    np.testing.assert_allclose(got[0], face68, atol=1e-9)
    too_few = pseudo_shapes(np.nan_to_num(labels), np.array([[True, False, False, False, False]]), m, tpl)
    assert np.isnan(too_few).all()


def _procrustes_mean(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(1, keepdims=True)
    x = x / np.sqrt((x ** 2).sum((1, 2)) / x.shape[1])[:, None, None]
    m = x[0]
    for _ in range(5):
        out = []
        for s in x:
            u, _, vt = np.linalg.svd(s.T @ m)
            out.append(s @ (u @ vt))
        x = np.array(out)
        m = x.mean(0)
        m /= np.sqrt((m ** 2).sum() / len(m))
    return m


@pytest.mark.parametrize("folder,target,tol", [("mtfl-train", "5pt", 0.04), ("helen29-train", "cofw29", 0.04)])
def test_maps_agree_with_real_annotations(shared_data, folder, target, tol):
    """The mean shape of human-labelled faces in the target scheme matches the mapped mean shape of the 300-W
    faces point by point, within ``tol`` of the inter-ocular distance (measured: 1.3-3.7% for MTFL, 0.6-3.7% for
    the kept HELEN-29 points)."""
    from facelm.datasets import RawFace, read_faces

    def faces(path):
        return np.array([f.landmarks for f in read_faces(path) if isinstance(f, RawFace)])

    m = get_map("300w68", target)
    a = faces(shared_data("w300-train"))
    b = faces(shared_data(folder))
    b = b[np.isfinite(b).all((1, 2))]
    ma = _procrustes_mean(m.apply(a)[:, m.mapped])
    mb = _procrustes_mean(b[:, m.mapped])
    u, _, vt = np.linalg.svd(mb.T @ ma)
    mb = mb @ (u @ vt)
    sch = get_scheme(target)
    ea, eb = sch.normaliser_groups("inter-ocular")
    idx = np.flatnonzero(m.mapped).tolist()
    iod = np.linalg.norm(ma[idx.index(ea[0])] - ma[idx.index(eb[0])])
    err = np.linalg.norm(ma - mb, axis=1) / iod
    assert err.max() < tol, err.round(3)


def test_map_offsets_move_points_in_each_faces_eye_frame(tmp_path):
    """Offsets are in eye-centre distances along the eye line and across it (down the face): they turn and scale
    with the face, and leave the correspondence (``matrix``) alone."""
    plain = SchemeMap("300w68", "5pt", ((36,), (45,), (30,), (48,), (54,)))
    m = replace(plain, offsets=((0.1, 0.0), (0.0, 0.2), (0.0, 0.0), (-0.05, 0.05), (0.0, 0.0)))
    np.testing.assert_array_equal(m.matrix, plain.matrix)
    face = template_68() * 100 + 50
    le, re = get_scheme("300w68").eye_centres(face)
    d = np.linalg.norm(re - le)
    delta = m.apply(face) - plain.apply(face)
    np.testing.assert_allclose(delta[0], [0.1 * d, 0.0], atol=1e-9)
    np.testing.assert_allclose(delta[1], [0.0, 0.2 * d], atol=1e-9)  # across = down an upright face (y down)
    np.testing.assert_allclose(delta[3], [-0.05 * d, 0.05 * d], atol=1e-9)
    t = np.radians(-70)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    turned = face @ rot.T * 0.5 + 7
    np.testing.assert_allclose(m.apply(turned), m.apply(face) @ rot.T * 0.5 + 7, atol=1e-9)
    # from a file: null = no offset; the pair count and the values are checked when the map is read
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"from": "300w68", "to": "5pt", "points": [[36], [45], [30], [48], [54]],
                             "offsets": [[0.1, 0], [0, 0.2], None, [-0.05, 0.05], None]}))
    np.testing.assert_allclose(load_map_file(p, register=False).apply(face), m.apply(face), atol=1e-9)
    for bad, why in (([[0.1, 0]], "one \\[along, across\\] pair per point"), ([[0.1]] * 5, "pair"),
                     ([[float("nan"), 0]] * 5, "finite"), ([[0.9, 0]] * 5, "within")):
        p.write_text(json.dumps({"from": "300w68", "to": "5pt", "points": [[36], [45], [30], [48], [54]],
                                 "offsets": bad}))
        with pytest.raises(UsageError, match=f"m.json.*{why}"):
            load_map_file(p, register=False)


def test_predict_scheme_conversion_uses_the_offsets():
    from facelm.runtime.convert import scheme_converter

    m = get_map("300w68", "cofw29")
    assert m.offsets is not None  # the built-in map carries fitted offsets (scripts/fit_map_offsets.py)
    face = template_68() * 100 + 50
    conv = scheme_converter("300w68", "cofw29")
    np.testing.assert_allclose(conv.landmarks(face), m.apply(face)[m.mapped], atol=1e-12)
    assert not np.allclose(conv.landmarks(face), replace(m, offsets=None).apply(face)[m.mapped])
