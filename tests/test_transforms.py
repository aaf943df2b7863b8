import math

import numpy as np
import pytest

from facelm.geometry import apply_affine
from facelm.schemes import get_scheme
from facelm.synthetic import template_68
from facelm.transforms import AugmentConfig, face_frames, frame_matrices, render_batch, upright_frames


def _dot_image(size=192, xy=(120.0, 80.0)):
    img = np.zeros((size, size, 3), np.uint8)
    x, y = int(xy[0]), int(xy[1])
    img[y - 1:y + 2, x - 1:x + 2] = 255
    return img[None]


def test_augmented_landmarks_follow_the_pixels():
    xy = np.array([[120.0, 80.0]])
    imgs = _dot_image(xy=xy[0])
    frames = face_frames(1, 192, 1.8)
    rng = np.random.default_rng(3)
    aug = AugmentConfig(rotate=30, flip_p=0.5, perturb=0.05, blur_p=0.0)
    for _ in range(20):
        mats, flips = frame_matrices(frames, 64, rng, aug)
        out, lm, mask = render_batch(imgs, np.array([0]), xy[None], mats, flips, np.array([0]), 64, rng, aug)
        ys, xs = np.nonzero(out[0, :, :, 0] > 30)
        w = out[0, ys, xs, 0].astype(float)
        assert abs((xs * w).sum() / w.sum() - lm[0, 0, 0]) < 0.5
        assert abs((ys * w).sum() / w.sum() - lm[0, 0, 1]) < 0.5


def test_augmentation_is_seeded_and_bounded():
    frames = face_frames(64, 192, 1.8)
    aug = AugmentConfig.for_arch("cnn6")
    m1, f1 = frame_matrices(frames, 64, np.random.default_rng(7), aug)
    m2, f2 = frame_matrices(frames, 64, np.random.default_rng(7), aug)
    assert np.array_equal(m1, m2) and np.array_equal(f1, f2)
    ang = np.degrees(np.arctan2(m1[:, 0, 1], np.abs(m1[:, 0, 0])))
    assert np.abs(ang).max() <= 30.0 + 1e-9 and np.abs(ang).max() > 15
    assert 0.2 < f1.mean() < 0.8
    assert AugmentConfig.for_arch("cnn7").rotate == 10


def test_flip_uses_scheme_permutation():
    scheme = get_scheme("300w68")
    lm = (template_68() * 100 + 46)[None]
    img = np.zeros((1, 192, 192, 3), np.uint8)
    frames = face_frames(1, 192, 1.8)
    aug = AugmentConfig(rotate=0, flip_p=1.0, perturb=0.0, blur_p=0.0)
    mats, flips = frame_matrices(frames, 64, np.random.default_rng(0), aug)
    assert flips[0]
    _, out, _ = render_batch(img, np.array([0]), lm, mats, flips, np.array(scheme.flip_perm), 64,
                             np.random.default_rng(0), aug)
    plain, _ = frame_matrices(frames, 64)
    ref = apply_affine(plain[0], lm[0])
    # after a flip + permutation, the face (symmetric template) looks the same: point 36 stays image-left
    assert np.abs(out[0] - ref).max() < 1.5
    assert out[0, 36, 0] < out[0, 45, 0]


def test_points_far_outside_are_masked():
    lm = np.array([[[96.0, 96.0], [400.0, 96.0]]])
    frames = face_frames(1, 192, 1.8)
    mats, flips = frame_matrices(frames, 64)
    _, _, mask = render_batch(np.zeros((1, 192, 192, 3), np.uint8), np.array([0]), lm, mats, flips,
                              np.array([0, 1]), 64)
    assert mask.tolist() == [[True, False]]


@pytest.mark.parametrize("theta", [-25.0, 0.0, 12.0, 40.0])
def test_upright_frames_recover_rotation_and_box(theta):
    scheme = get_scheme("300w68")
    tpl = template_68() * 100
    t = math.radians(theta)
    r = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    centre = tpl.mean(0)
    rot = (tpl - centre) @ r.T + centre + [30, 10]
    le, re = scheme.eye_centres(rot[None])
    f = upright_frames(rot[None], le, re, 1.0)[0]
    le0, re0 = scheme.eye_centres(tpl[None])
    f0 = upright_frames(tpl[None], le0, re0, 1.0)[0]
    assert f[3] == pytest.approx(theta, abs=1e-6)
    assert f[2] == pytest.approx(f0[2], rel=1e-6)
    # the upright box centre moves with the shape
    c0 = f0[:2] - centre
    assert np.allclose(f[:2], r @ c0 + centre + [30, 10], atol=1e-6)
