"""Heatmap encoding/decoding: coordinate conversion, Gaussian and boundary targets, weighted loss map, decoding
(quarter-pixel shift, DARK-style refinement, ONNX parity), SMT-Net's sigma schedule and residual targets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facelm.heatmap import (
    REFINE_MAX_STEP,
    SIGMA_SCHEDULES,
    boundary_heatmap,
    crop_to_heatmap,
    decode_heatmaps,
    gaussian_heatmaps,
    heatmap_argmax,
    heatmap_to_crop,
    residual_targets,
    sigma_schedule,
    weighted_loss_map,
)
from facelm.schemes import LandmarkScheme, get_scheme

PROPS = settings(max_examples=40, deadline=None)
EXP_HALF = math.exp(-0.5)


def _pts(*xy: tuple[float, float], dtype=torch.float32) -> torch.Tensor:
    """(1, L, 2) points."""
    return torch.tensor([list(p) for p in xy], dtype=dtype).unsqueeze(0)


# --- coordinate conversion ----------------------------------------------------------------------------------

def test_crop_heatmap_golden_values():
    # 256 px crop, 64 px heatmap (stride 4): heatmap pixel 0 is centred on crop 1.5 (the centre of crop px 0..3)
    assert crop_to_heatmap(1.5, 256, 64) == pytest.approx(0.0)
    assert crop_to_heatmap(0.0, 256, 64) == pytest.approx(-0.375)
    assert heatmap_to_crop(0.0, 256, 64) == pytest.approx(1.5)
    assert heatmap_to_crop(63.0, 256, 64) == pytest.approx(253.5)
    for s, h in [(256, 64), (128, 32), (64, 64), (100, 64)]:
        assert crop_to_heatmap(s / 2 - 0.5, s, h) == pytest.approx(h / 2 - 0.5)


def test_crop_heatmap_tensor_and_numpy():
    t = torch.tensor([[[10.0, 200.0]]])
    out = crop_to_heatmap(t, 256, 64)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([[[2.125, 49.625]]]))
    a = np.array([[10.0, 200.0]])
    out_np = crop_to_heatmap(a, 256, 64)
    assert isinstance(out_np, np.ndarray)
    np.testing.assert_allclose(out_np, [[2.125, 49.625]])
    np.testing.assert_allclose(heatmap_to_crop(out_np, 256, 64), a)
    with pytest.raises(ValueError):
        crop_to_heatmap(t, 0, 64)


@PROPS
@given(st.floats(-50, 300), st.sampled_from([(256, 64), (128, 32), (64, 64), (96, 48)]))
def test_crop_heatmap_inverse(p, sizes):
    s, h = sizes
    assert heatmap_to_crop(crop_to_heatmap(p, s, h), s, h) == pytest.approx(p, abs=1e-9)
    assert crop_to_heatmap(heatmap_to_crop(p, s, h), s, h) == pytest.approx(p, abs=1e-9)


# --- Gaussian targets ---------------------------------------------------------------------------------------

def test_gaussian_heatmaps_values():
    sigma = 1.5
    pts = _pts((10.3, 20.7), (4.0, 5.0))
    h = gaussian_heatmaps(pts, 32, sigma)
    assert h.shape == (1, 2, 32, 32) and h.dtype == torch.float32
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    for i, (px, py) in enumerate(pts[0].tolist()):
        ref = torch.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma**2))
        assert torch.allclose(h[0, i], ref, atol=1e-6)
    # integer point: peak exactly 1 there, exp(-1/2) at distance sigma along an axis
    assert h[0, 1, 5, 4].item() == pytest.approx(1.0)
    h1 = gaussian_heatmaps(_pts((4.0, 5.0)), 16, 2.0)
    assert h1[0, 0, 5, 6].item() == pytest.approx(EXP_HALF, abs=1e-6)
    assert h1[0, 0, 3, 4].item() == pytest.approx(EXP_HALF, abs=1e-6)
    assert h1.max().item() == pytest.approx(1.0)
    # sub-pixel point: the map value is exp(-d^2 / 2 sigma^2) with the exact distance
    assert h[0, 0, 20, 12].item() == pytest.approx(math.exp(-(1.7**2 + 0.7**2) / (2 * sigma**2)), abs=1e-6)


def test_gaussian_heatmaps_mask_nonfinite_and_sigma_tensor():
    pts = _pts((3.0, 3.0), (float("nan"), 2.0), (5.0, 6.0), (1.0, 1.0))
    mask = torch.tensor([[True, True, False, True]])
    sigma = torch.tensor([1.0, 1.0, 1.0, 3.0])              # per landmark, broadcast to (N, L)
    h = gaussian_heatmaps(pts, 8, sigma, mask=mask)
    assert torch.isfinite(h).all()
    assert h[0, 1].abs().sum() == 0 and h[0, 2].abs().sum() == 0
    assert h[0, 0, 3, 4].item() == pytest.approx(EXP_HALF, abs=1e-6)
    assert h[0, 3, 1, 4].item() == pytest.approx(EXP_HALF, abs=1e-6)       # 3 px away with sigma 3
    assert gaussian_heatmaps(pts.double(), (6, 9), 1.0).shape == (1, 4, 6, 9)
    assert gaussian_heatmaps(pts.double(), 8, 1.0).dtype == torch.float64
    for bad in (0.0, -1.0, float("nan"), torch.tensor([1.0, 0.0, 1.0, 1.0])):
        with pytest.raises(ValueError):
            gaussian_heatmaps(pts, 8, bad)
    with pytest.raises(ValueError):
        gaussian_heatmaps(torch.zeros(4, 2), 8, 1.0)


# --- decoding -----------------------------------------------------------------------------------------------

def test_quarter_pixel_shift_hand_built():
    h = torch.zeros(1, 1, 5, 7)
    h[0, 0, 2, 3] = 1.0
    h[0, 0, 2, 4] = 0.5          # right higher than left -> +0.25 in x
    h[0, 0, 2, 2] = 0.2
    h[0, 0, 1, 3] = 0.7          # up higher than down -> -0.25 in y
    h[0, 0, 3, 3] = 0.1
    assert decode_heatmaps(h).tolist() == [[[3.25, 1.75]]]
    assert heatmap_argmax(h).tolist() == [[[3.0, 2.0]]]
    # swapped neighbours -> opposite shifts
    assert decode_heatmaps(h.flip(-1).flip(-2)).tolist() == [[[6 - 3.25, 4 - 1.75]]]
    # equal neighbours -> no shift
    g = torch.zeros(1, 1, 5, 7)
    g[0, 0, 2, 3] = 1.0
    g[0, 0, 2, 2] = g[0, 0, 2, 4] = 0.5
    assert decode_heatmaps(g).tolist() == [[[3.0, 2.0]]]


def test_quarter_pixel_shift_border():
    # argmax on the left border: no shift in x even though the right neighbour is high; y still shifts
    h = torch.zeros(1, 2, 5, 7)
    h[0, 0, 2, 0] = 1.0
    h[0, 0, 2, 1] = 0.9
    h[0, 0, 3, 0] = 0.5
    # argmax in the bottom-right corner: no shift on either axis
    h[0, 1, 4, 6] = 1.0
    h[0, 1, 4, 5] = 0.9
    h[0, 1, 3, 6] = 0.9
    assert decode_heatmaps(h).tolist() == [[[0.0, 2.25], [6.0, 4.0]]]
    assert decode_heatmaps(h, refine=True)[0, 1].tolist() == [6.0, 4.0]


def test_decode_batched_channels_independent():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(3, 7, 2, generator=g) * 14 + 1         # in [1, 15] on a 17 px map
    h = gaussian_heatmaps(pts, 17, 1.2)
    plain = decode_heatmaps(h)
    fine = decode_heatmaps(h, refine=True)
    assert plain.shape == fine.shape == (3, 7, 2)
    assert (plain - pts).abs().max().item() <= 0.25 + 1e-4
    assert (fine - pts).abs().max().item() < 1e-3
    # permuting channels permutes the output
    perm = torch.randperm(7, generator=g)
    assert torch.equal(decode_heatmaps(h[:, perm], refine=True), fine[:, perm])


@PROPS
@given(st.floats(1.0, 30.0), st.floats(1.0, 30.0), st.floats(1.0, 4.0))
def test_decode_round_trip(x, y, sigma):
    size = 32
    pts = _pts((x, y))
    h = gaussian_heatmaps(pts, size, sigma)
    err_plain = (decode_heatmaps(h) - pts).abs().max().item()
    err_fine = (decode_heatmaps(h, refine=True) - pts).abs().max().item()
    assert err_plain <= 0.25 + 1e-4
    assert err_fine < 0.01          # exact up to float32 rounding for an untruncated Gaussian


def _correlated_gaussian(centre: tuple[float, float], rho: float) -> torch.Tensor:
    sx, sy = 2.0, 1.3
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(18.0), indexing="ij")
    u, v = (xs - centre[0]) / sx, (ys - centre[1]) / sy
    return torch.exp(-(u * u - 2 * rho * u * v + v * v) / (2 * (1 - rho * rho)))[None, None]


@pytest.mark.parametrize("rho", [0.6, -0.6])
def test_refine_exact_for_correlated_gaussian(rho):
    # log h is any concave quadratic: the Taylor step (with the cross term dxy) recovers the centre exactly
    centre = (9.3, 7.2)
    h = _correlated_gaussian(centre, rho)
    assert heatmap_argmax(h)[0, 0].tolist() == [9.0, 7.0]
    assert torch.allclose(decode_heatmaps(h, refine=True)[0, 0], torch.tensor(centre), atol=1e-3)


def test_refine_step_clamped():
    # strongly correlated: the discrete argmax (10, 7) is 0.63 px from the centre in x; the step is clamped to 0.5
    h = _correlated_gaussian((9.37, 6.81), 0.6)
    assert heatmap_argmax(h)[0, 0].tolist() == [10.0, 7.0]
    assert torch.allclose(decode_heatmaps(h, refine=True)[0, 0], torch.tensor([9.5, 6.81]), atol=1e-3)


def test_decode_exact_points_and_half_pixels():
    # integer points decode exactly; half-pixel points (ties) decode within 0.25 plain, exactly with refine
    pts = _pts((5.0, 9.0), (7.5, 3.5))
    h = gaussian_heatmaps(pts, 16, 1.0)
    plain = decode_heatmaps(h)
    assert plain[0, 0].tolist() == [5.0, 9.0]
    assert (plain[0, 1] - pts[0, 1]).abs().max().item() == pytest.approx(0.25)
    assert torch.allclose(decode_heatmaps(h, refine=True), pts, atol=1e-3)


def test_refine_step_is_bounded_and_finite_on_arbitrary_maps():
    g = torch.Generator().manual_seed(2)
    for h in (torch.rand(4, 6, 9, 11, generator=g), torch.rand(2, 3, 8, 8, generator=g) ** 8,
              torch.randn(2, 3, 8, 8, generator=g), torch.zeros(1, 2, 5, 5), torch.ones(1, 1, 4, 4)):
        out = decode_heatmaps(h, refine=True)
        assert torch.isfinite(out).all()
        assert (out - heatmap_argmax(h)).abs().max().item() <= REFINE_MAX_STEP + 1e-6
    # flat (all-zero) channels decode to (0, 0)
    assert decode_heatmaps(torch.zeros(1, 2, 5, 5), refine=True).abs().sum().item() == 0.0
    with pytest.raises(ValueError):
        decode_heatmaps(torch.zeros(2, 5, 5))


class _Decode(torch.nn.Module):
    def __init__(self, refine: bool):
        super().__init__()
        self.refine = refine

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return decode_heatmaps(h, refine=self.refine)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")     # the TorchScript exporter is deprecated
@pytest.mark.parametrize("refine", [False, True])
def test_decode_onnx_export_parity(refine, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(2, 6, 2, generator=g) * 18 - 1          # some on/over the border
    pts[0, 0] = torch.tensor([0.0, 7.3])
    pts[1, 1] = torch.tensor([15.0, 15.0])
    gauss = gaussian_heatmaps(pts, 16, 1.5)
    noise = torch.rand(2, 3, 16, 16, generator=g)
    h = torch.cat([gauss, noise, torch.zeros(2, 1, 16, 16)], dim=1)
    path = tmp_path / "decode.onnx"
    torch.onnx.export(_Decode(refine), (h,), str(path), input_names=["heatmaps"], output_names=["xy"],
                      dynamic_axes={"heatmaps": {0: "n"}, "xy": {0: "n"}}, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (h, torch.cat([h, h.flip(0)], dim=0)):
        got = sess.run(None, {"heatmaps": batch.numpy()})[0]
        want = decode_heatmaps(batch, refine=refine).numpy()
        assert got.shape == want.shape
        if refine:
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, want)
    # and the exported decoder is right, not just consistent: Gaussian channels away from the border
    inner = ((pts > 1) & (pts < 14)).all(-1)
    dec = torch.from_numpy(sess.run(None, {"heatmaps": h.numpy()})[0])[:, :6]
    assert ((dec - pts).abs().amax(-1)[inner] <= (1e-3 if refine else 0.25 + 1e-4)).all()


# --- boundary map -------------------------------------------------------------------------------------------

def _three_point_scheme(boundaries: dict) -> LandmarkScheme:
    return LandmarkScheme(name="tri3", num_landmarks=3, names=("a", "b", "c"), flip_perm=(0, 1, 2),
                          normalisers={"inter-ocular": ((0,), (1,))}, angle_normaliser="inter-ocular",
                          boundaries=boundaries)


def _brute_force_boundary(points: list[tuple[float, float]], lines, size: int, sigma: float) -> np.ndarray:
    out = np.zeros((size, size))
    for yy in range(size):
        for xx in range(size):
            best = math.inf
            for line in lines:
                for i, j in itertools.pairwise(line):
                    (ax, ay), (bx, by) = points[i], points[j]
                    vx, vy = bx - ax, by - ay
                    l2 = vx * vx + vy * vy
                    t = 0.0 if l2 == 0 else min(1.0, max(0.0, ((xx - ax) * vx + (yy - ay) * vy) / l2))
                    best = min(best, (xx - ax - t * vx) ** 2 + (yy - ay - t * vy) ** 2)
            out[yy, xx] = math.exp(-best / (2 * sigma**2))
    return out


def test_boundary_heatmap_values():
    sigma = 2.0
    scheme = _three_point_scheme({"line": (0, 1, 2)})
    pts = _pts((5.0, 5.0), (15.0, 5.0), (15.0, 15.0))
    b = boundary_heatmap(pts, scheme, 20, sigma)
    assert b.shape == (1, 1, 20, 20) and b.dtype == torch.float32
    assert b[0, 0, 5, 10].item() == pytest.approx(1.0)                     # on the first segment
    assert b[0, 0, 10, 15].item() == pytest.approx(1.0)                    # on the second segment
    assert b[0, 0, 7, 10].item() == pytest.approx(EXP_HALF, abs=1e-6)      # distance sigma from a segment
    assert b[0, 0, 2, 2].item() == pytest.approx(math.exp(-18 / 8), abs=1e-6)   # beyond an end: to the point
    assert b[0, 0, 10, 19].item() == pytest.approx(math.exp(-16 / 8), abs=1e-6)
    ref = _brute_force_boundary(pts[0].tolist(), [(0, 1, 2)], 20, sigma)
    np.testing.assert_allclose(b[0, 0].numpy(), ref, atol=1e-6)


def test_boundary_heatmap_max_over_lines_mask_and_batch():
    scheme = _three_point_scheme({"ab": (0, 1), "c": (2,)})
    pts = torch.tensor([[[2.3, 3.1], [12.7, 9.4], [8.0, 14.0]],
                        [[1.0, 1.0], [14.0, 1.0], [8.5, 8.5]]])
    sigma = torch.tensor([1.5, 2.5])                                       # per sample
    b = boundary_heatmap(pts, scheme, 16, sigma)
    assert b.shape == (2, 1, 16, 16)
    for n in range(2):
        ref = _brute_force_boundary(pts[n].tolist(), [(0, 1), (2, 2)], 16, float(sigma[n]))
        np.testing.assert_allclose(b[n, 0].numpy(), ref, atol=1e-6)
    assert b[0, 0, 14, 8].item() == pytest.approx(1.0)                     # one-landmark line = a point
    # masking landmark 1 drops the segment (0, 1); only the point 2 remains
    masked = boundary_heatmap(pts, scheme, 16, sigma, mask=torch.tensor([[True, False, True], [True] * 3]))
    np.testing.assert_allclose(masked[0, 0].numpy(), _brute_force_boundary(pts[0].tolist(), [(2, 2)], 16, 1.5),
                               atol=1e-6)
    assert torch.equal(masked[1], b[1])


def test_boundary_heatmap_builtin_schemes_and_errors():
    s = get_scheme("300w68")
    g = torch.Generator().manual_seed(4)
    pts = (torch.rand(2, 68, 2, generator=g) * 50 + 7).round()
    b = boundary_heatmap(pts, "300w68", 64, 1.0)
    assert b.shape == (2, 1, 64, 64)
    assert b.min().item() >= 0 and b.max().item() <= 1
    # every landmark used by a boundary is on it (integer points: value 1 at their pixel)
    used = sorted({i for line in s.boundaries.values() for i in line})
    xi, yi = pts[0, used, 0].long(), pts[0, used, 1].long()
    assert torch.allclose(b[0, 0, yi, xi], torch.ones(len(used)))
    assert boundary_heatmap(torch.rand(1, 19, 2) * 60, "aflw19", 64, 1.0).shape == (1, 1, 64, 64)
    assert boundary_heatmap(torch.rand(1, 98, 2) * 60, get_scheme("wflw98"), 64, 1.0).shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match="no boundaries"):
        boundary_heatmap(torch.zeros(1, 29, 2), "cofw29", 64, 1.0)
    with pytest.raises(ValueError, match="landmarks"):
        boundary_heatmap(torch.zeros(1, 19, 2), "300w68", 64, 1.0)


# --- weighted loss map --------------------------------------------------------------------------------------

def test_weighted_loss_map_golden():
    t = torch.zeros(1, 2, 5, 5)
    t[0, 0, 2, 2] = 0.5            # >= 0.2: its 3x3 neighbourhood is weighted
    t[0, 0, 4, 4] = 0.2            # exactly the threshold counts (>=)
    t[0, 0, 0, 0] = 0.19           # below: not weighted
    t[0, 1, 0, 4] = 1.0            # other channel, corner
    w = weighted_loss_map(t)
    want = torch.ones(1, 2, 5, 5)
    want[0, 0, 1:4, 1:4] = 11.0
    want[0, 0, 3:5, 3:5] = 11.0
    want[0, 1, 0:2, 3:5] = 11.0
    assert torch.equal(w, want)
    w2 = weighted_loss_map(t, threshold=0.6, weight=4.0)
    want2 = torch.ones(1, 2, 5, 5)
    want2[0, 1, 0:2, 3:5] = 5.0
    assert torch.equal(w2, want2)
    # Gaussian target: a sigma=1 blob is weighted out to where the dilated value drops below 0.2
    g = gaussian_heatmaps(_pts((8.0, 8.0)), 17, 1.0)
    wg = weighted_loss_map(g)
    # x = 10 (value exp(-2) = 0.135) is next to x = 9 (exp(-1/2)): weighted; x = 11's largest neighbour is 0.135
    assert wg[0, 0, 8, 8] == 11 and wg[0, 0, 8, 10] == 11 and wg[0, 0, 8, 11] == 1
    assert wg[0, 0, 10, 10] == 11 and wg[0, 0, 11, 10] == 1            # (9, 9): exp(-1); (10, 9): exp(-2.5)
    assert int((wg == 11).sum()) == 25                                  # the 5 x 5 block around (8, 8)
    assert not wg.requires_grad


# --- SMT-Net ------------------------------------------------------------------------------------------------

def test_sigma_schedule_values():
    assert SIGMA_SCHEDULES == ("fixed", "temporal", "spatial")
    assert sigma_schedule("fixed", 0.7) == 4.0
    temporal = [sigma_schedule("temporal", p) for p in (0.0, 0.24, 0.25, 0.5, 0.74, 0.75, 0.99, 1.0)]
    assert temporal == [4.0, 4.0, 3.0, 2.0, 2.0, 1.0, 1.0, 1.0]
    assert sigma_schedule("temporal", 1.0, phases=6) == 1.0                 # 4 - 5 floored at min_sigma
    assert sigma_schedule("temporal", 0.99, phases=6, min_sigma=0.5) == 0.5
    assert sigma_schedule("temporal", 0.5, delta=0.5) == 3.0
    assert sigma_schedule("temporal", 0.9, phases=1) == 4.0
    assert [sigma_schedule("spatial", 0.3, stack=i, stacks=2) for i in range(2)] == [4.0, 3.0]
    assert [sigma_schedule("spatial", 0.0, stack=i, stacks=4, delta=0.5) for i in range(4)] == [4.0, 3.5, 3.0, 2.5]
    assert sigma_schedule("spatial", 0.0, stack=7, stacks=8) == 1.0
    for kwargs in ({"kind": "linear", "progress": 0.5}, {"kind": "temporal", "progress": 1.5},
                   {"kind": "temporal", "progress": -0.1}, {"kind": "spatial", "progress": 0.0, "stack": 2,
                                                            "stacks": 2}, {"kind": "temporal", "progress": 0.1,
                                                                           "phases": 0}):
        with pytest.raises(ValueError):
            sigma_schedule(**kwargs)


def test_residual_targets_match_target_heatmap_argmax():
    g = torch.Generator().manual_seed(5)
    pts = torch.rand(3, 10, 2, generator=g) * 20 - 2                    # some outside a 16 px map
    pts[0, 0] = torch.tensor([3.5, 7.5])                                 # exact ties
    pts[0, 1] = torch.tensor([-3.2, 20.4])
    res = residual_targets(pts, 16)
    assert res.shape == (3, 10, 2)
    ref = heatmap_argmax(gaussian_heatmaps(pts, 16, 1.0))
    assert torch.allclose(res, pts - ref, atol=1e-6)
    assert res[0, 0].tolist() == [0.5, 0.5]
    assert torch.allclose(res[0, 1], torch.tensor([-3.2, 5.4]), atol=1e-5)  # clamped to pixels (0, 15)
    inside = ((pts >= -0.5) & (pts <= 15.5)).all(-1)
    assert (res[inside].abs() <= 0.5 + 1e-6).all()
    # (H, W) sizes clamp each axis separately
    assert torch.allclose(residual_targets(_pts((30.0, 30.0)), (8, 40)), torch.tensor([[[0.0, 23.0]]]))
    assert torch.isnan(residual_targets(_pts((float("nan"), 1.0)), 8)[0, 0, 0])


def test_residual_targets_from_predicted_heatmaps():
    # the paper's definition: t - argmax of the current (predicted) heatmap, which may be wrong
    pts = _pts((4.3, 5.6), (10.2, 2.0))
    pred = gaussian_heatmaps(_pts((4.0, 6.0), (12.0, 3.0)), 16, 1.0).requires_grad_(True)
    res = residual_targets(pts, 16, heatmaps=pred)
    assert torch.allclose(res, torch.tensor([[[0.3, -0.4], [-1.8, -1.0]]]), atol=1e-5)
    assert not res.requires_grad
    with pytest.raises(ValueError):
        residual_targets(pts, 8, heatmaps=pred)
