import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facelm.geometry import (apply_affine, compose_affine, crop_matrix, eye_angle, generalized_procrustes,
                             invert_affine, landmark_square, procrustes_align, warp_crop)

finite = st.floats(-500, 500, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(cx=finite, cy=finite, side=st.floats(5, 800), size=st.integers(16, 256), ang=st.floats(-180, 180))
def test_crop_uncrop_round_trip(cx, cy, side, size, ang):
    pts = np.random.default_rng(0).uniform(-1000, 1000, (10, 2))
    m = crop_matrix((cx, cy), side, size, ang)
    back = apply_affine(invert_affine(m), apply_affine(m, pts))
    assert np.abs(back - pts).max() < 1e-6


def test_crop_matrix_maps_box_edges_to_pixel_edges():
    m = crop_matrix((50, 40), 20, 10)
    # the box [40, 60] maps to the crop's outer pixel edges -0.5 and 9.5; its centre to 4.5
    assert np.allclose(apply_affine(m, np.array([[40, 30], [60, 50], [50, 40]])), [[-0.5, -0.5], [9.5, 9.5],
                                                                                   [4.5, 4.5]])


def test_crop_removes_rotation():
    le, re = np.array([10.0, 10.0]), np.array([20.0, 20.0])  # eye line at +45 degrees
    ang = float(eye_angle(le, re))
    assert ang == pytest.approx(45.0)
    m = crop_matrix((15, 15), 40, 64, ang)
    a, b = apply_affine(m, np.stack([le, re]))
    assert a[1] == pytest.approx(b[1]) and b[0] > a[0]


@settings(max_examples=30, deadline=None)
@given(theta=st.floats(-170, 170))
def test_rotating_shape_then_estimating_angle_returns_it(theta):
    le, re = np.array([-1.0, 0.0]), np.array([1.0, 0.0])
    t = math.radians(theta)
    r = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    assert float(eye_angle(r @ le, r @ re)) == pytest.approx(theta, abs=1e-6)


def test_compose_affine():
    m1 = crop_matrix((10, 20), 30, 64, 10)
    m2 = crop_matrix((5, 5), 50, 32, -25)
    p = np.array([[3.0, 4.0], [100.0, -20.0]])
    assert np.allclose(apply_affine(compose_affine(m2, m1), p), apply_affine(m2, apply_affine(m1, p)))


def test_warp_crop_antialiased_matches_geometry():
    img = np.zeros((400, 400, 3), np.uint8)
    img[195:206, 295:306] = 255  # a bright square centred at (300, 200)
    m = crop_matrix((200, 200), 400, 40)  # scale 0.1: takes the pre-resize path
    out = warp_crop(img, m, 40)
    ys, xs = np.nonzero(out[..., 0] > 40)
    centre = apply_affine(m, np.array([300.0, 200.0]))
    assert abs(xs.mean() - centre[0]) < 0.6 and abs(ys.mean() - centre[1]) < 0.6


def test_landmark_square():
    c, s = landmark_square(np.array([[0, 0], [10, 4.0]]), 1.5)
    assert np.allclose(c, [5, 2]) and s == pytest.approx(15)


def test_procrustes_leaves_aligned_set_unchanged():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(12, 2))
    shapes = np.stack([base + rng.normal(scale=0.01, size=base.shape) for _ in range(20)])
    aligned, mean = generalized_procrustes(shapes)
    aligned2, mean2 = generalized_procrustes(aligned)
    assert np.abs(aligned2 - aligned).max() < 1e-6
    assert np.abs(mean2 - mean).max() < 1e-6


def test_procrustes_removes_similarity():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 2))
    t = 0.7
    y = 3.0 * x @ np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]]) + [5, -2]
    aligned, _ = procrustes_align(y, x)
    assert np.abs(aligned - x).max() < 1e-9
    with pytest.raises(ValueError):
        procrustes_align(np.zeros((5, 2)), x[:5])


def test_batched_affines_match_the_single_ones_and_accept_empty_input():
    from facelm.geometry import apply_affines, invert_affine, invert_affines

    rng = np.random.default_rng(3)
    mats = np.concatenate([rng.normal(size=(5, 2, 2)) + 2 * np.eye(2), rng.normal(size=(5, 2, 1))], axis=2)
    pts = rng.normal(size=(5, 7, 2))
    inv = invert_affines(mats)
    np.testing.assert_array_equal(inv, np.stack([invert_affine(m) for m in mats]))
    moved = apply_affines(mats, pts)
    np.testing.assert_allclose(moved[2], pts[2] @ mats[2, :, :2].T + mats[2, :, 2])
    np.testing.assert_allclose(apply_affines(inv, moved), pts, atol=1e-10)
    assert invert_affines(np.zeros((0, 2, 3))).shape == (0, 2, 3)
    assert apply_affines(np.zeros((0, 2, 3)), np.zeros((0, 7, 2))).shape == (0, 7, 2)


def test_turn_image_grows_the_canvas_and_maps_pixels():
    from facelm.geometry import turn_image

    img = np.zeros((40, 60, 3), np.uint8)
    img[10, 50] = 255
    turned, m = turn_image(img, 90)  # counter-clockwise on screen
    assert turned.shape[:2] == (60, 40)
    x, y = m @ np.array([50.0, 10.0, 1.0])
    assert turned[round(y), round(x)].max() > 0
    same, m0 = turn_image(img, 0)
    np.testing.assert_array_equal(same, img)
    np.testing.assert_allclose(m0, [[1, 0, 0], [0, 1, 0]], atol=1e-9)


def test_point_boxes_use_the_finite_points_and_mark_shapes_with_too_few():
    from facelm.geometry import point_boxes

    s = np.array([[[1.0, 2.0], [5.0, -1.0], [np.nan, 9.0]],
                  [[np.nan, np.nan], [3.0, 3.0], [np.nan, 0.0]]])
    b = point_boxes(s)
    assert np.array_equal(b[0], [1.0, -1.0, 5.0, 2.0]) and np.array_equal(b[1], [3.0, 3.0, 3.0, 3.0])
    b2 = point_boxes(s, min_points=2)
    assert np.array_equal(b2[0], b[0]) and np.isnan(b2[1]).all()
