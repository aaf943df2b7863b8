"""facelm.crops: the crop convention shared by training, export checks, evaluation and the runtime."""

from __future__ import annotations

import numpy as np

from facelm.crops import (
    DEFAULT_CACHE_SIZE, DEFAULT_MARGIN, cache_geometry, cache_landmarks, face_frames, frame_matrices, reframe, stage_frames,
    upright_frames
)
from facelm.schemes import get_scheme
from facelm.synthetic import template_68


def test_cache_geometry_defaults():
    assert cache_geometry({}) == (DEFAULT_CACHE_SIZE, DEFAULT_MARGIN) == (192, 1.8)
    assert cache_geometry({"cache_size": 128, "margin": 1.5}) == (128, 1.5)


def test_stage_frames_pick_the_face_square_or_the_upright_square():
    sch = get_scheme("300w68")
    lm = np.stack([template_68() * 40 + 90, template_68() * 38 + 95])
    np.testing.assert_array_equal(stage_frames(1, {}, lm, sch), face_frames(2, 192, 1.8))
    le, re = sch.eye_centres(lm)
    np.testing.assert_array_equal(stage_frames(2, {}, lm, sch), upright_frames(lm, le, re, sch.face_box_scale))
    s1 = lm + 1.0  # a stage-1 prediction replaces the ground truth
    le1, re1 = sch.eye_centres(s1)
    np.testing.assert_array_equal(stage_frames(2, {}, lm, sch, s1),
                                  upright_frames(s1, le1, re1, sch.face_box_scale))


def test_cache_landmarks_applies_each_faces_matrix():
    m = np.array([[[2.0, 0, 1], [0, 2, 3]], [[1, 0, -5], [0, 1, 5]]])
    lm = np.ones((2, 3, 2))
    out = cache_landmarks(m, lm)
    np.testing.assert_array_equal(out[0], np.full((3, 2), [3.0, 5.0]))
    np.testing.assert_array_equal(out[1], np.full((3, 2), [-4.0, 6.0]))


def test_reframe_scales_and_moves_along_the_frames_own_axes():
    f = np.array([[100.0, 50.0, 40.0, 0.0], [100.0, 50.0, 40.0, 90.0]])
    np.testing.assert_array_equal(reframe(f), f)
    g = reframe(f, 1.1, 0.25, 0.0)
    np.testing.assert_allclose(g[:, 2], [44.0, 44.0])
    np.testing.assert_allclose(g[:, 3], f[:, 3])
    # 10 px along the frame's x axis: image +x for an upright frame, image +y for one turned by 90 degrees
    np.testing.assert_allclose(g[:, :2], [[110.0, 50.0], [100.0, 60.0]], atol=1e-9)
    np.testing.assert_allclose(reframe(f, 1.0, 0.0, 0.25)[:, :2], [[100.0, 60.0], [90.0, 50.0]], atol=1e-9)
    # the moved frame's crop centre is where its matrix sends the moved centre
    m, _ = frame_matrices(g, 64)
    for k in range(2):
        p = m[k] @ np.array([g[k, 0], g[k, 1], 1.0])
        np.testing.assert_allclose(p, [31.5, 31.5], atol=1e-9)
