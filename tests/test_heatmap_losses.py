"""Heatmap losses: AWing golden values, continuity of value and slope at theta, symmetry, zero at the target,
gradchecks; BICE and MSE golden values; weight map, mask and reduction; hinge residual loss; factory/params."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facelm.heatmap import gaussian_heatmaps, weighted_loss_map
from facelm.heatmap.losses import (
    AWING_DEFAULTS,
    HEATMAP_LOSSES,
    AdaptiveWingLoss,
    BICELoss,
    HeatmapMSELoss,
    HingeResidualLoss,
    create_heatmap_loss,
    hinge_residual_loss,
)

PROPS = settings(max_examples=40, deadline=None)


def awing_ref(y: float, y_hat: float, alpha=2.1, omega=14.0, eps=1.0, theta=0.5) -> float:
    """AWing Eq. 3 written out with the math module."""
    d = abs(y - y_hat)
    p = alpha - y
    if d < theta:
        return omega * math.log(1 + (d / eps) ** p)
    a = omega * (1 / (1 + (theta / eps) ** p)) * p * ((theta / eps) ** (p - 1)) * (1 / eps)
    c = theta * a - omega * math.log(1 + (theta / eps) ** p)
    return a * d - c


def _px(values, dtype=torch.float64) -> torch.Tensor:
    """(1, 1, 1, k) tensor."""
    return torch.tensor(values, dtype=dtype).reshape(1, 1, 1, -1)


# --- AWing ----------------------------------------------------------------------------------------------------

def test_awing_golden_values():
    loss = AdaptiveWingLoss()
    # hand computations, independent of awing_ref:
    # y = 1, y_hat = 0.9: omega * ln(1 + 0.1 ** 1.1)
    assert loss.elementwise(_px([0.9]), _px([1.0])).item() == pytest.approx(14 * math.log(1 + 0.1**1.1), rel=1e-12)
    assert 14 * math.log(1 + 0.1**1.1) == pytest.approx(1.0701, abs=1e-4)
    # y = 0, y_hat = 0.7 (linear part): p = 2.1, r = 0.5 ** 2.1, A = 14 * 2.1 * 0.5 ** 1.1 / (1 + r)
    r = 0.5**2.1
    a = 14 * 2.1 * 0.5**1.1 / (1 + r)
    c = 0.5 * a - 14 * math.log(1 + r)
    assert loss.elementwise(_px([0.7]), _px([0.0])).item() == pytest.approx(0.7 * a - c, rel=1e-12)
    assert a == pytest.approx(11.1214, abs=1e-4) and 0.7 * a - c == pytest.approx(5.1595, abs=1e-4)
    # a grid over both branches against the formula
    ys = [0.0, 0.05, 0.3, 0.5, 0.8, 1.0]
    y_hats = [-0.4, 0.0, 0.1, 0.45, 0.6, 0.99, 1.3]
    target = _px([y for y in ys for _ in y_hats])
    pred = _px([yh for _ in ys for yh in y_hats])
    want = torch.tensor([awing_ref(y, yh) for y in ys for yh in y_hats], dtype=torch.float64)
    assert torch.allclose(loss.elementwise(pred, target).flatten(), want, rtol=1e-12, atol=1e-12)
    # non-default parameters reach the formula
    other = AdaptiveWingLoss(alpha=2.5, omega=8.0, epsilon=0.5, theta=0.3)
    assert other.elementwise(_px([0.35]), _px([0.2])).item() == pytest.approx(
        awing_ref(0.2, 0.35, 2.5, 8.0, 0.5, 0.3), rel=1e-12)
    assert other.elementwise(_px([0.9]), _px([0.2])).item() == pytest.approx(
        awing_ref(0.2, 0.9, 2.5, 8.0, 0.5, 0.3), rel=1e-12)


@pytest.mark.parametrize("y", [0.0, 0.2, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("side", [1.0, -1.0])
@pytest.mark.parametrize("params", [{}, {"alpha": 2.5, "omega": 8.0, "epsilon": 0.5, "theta": 0.3}])
def test_awing_continuous_value_and_slope_at_theta(y, side, params):
    loss = AdaptiveWingLoss(**params)
    theta, eps, omega, alpha = loss.theta, loss.epsilon, loss.omega, loss.alpha

    def value_and_slope(d: float) -> tuple[float, float]:
        pred = torch.tensor([[[[y + side * d]]]], dtype=torch.float64, requires_grad=True)
        v = loss.elementwise(pred, torch.tensor([[[[y]]]], dtype=torch.float64)).sum()
        (g,) = torch.autograd.grad(v, pred)
        return v.item(), g.item()

    h = 1e-7
    v_in, g_in = value_and_slope(theta - h)
    v_out, g_out = value_and_slope(theta + h)
    # the linear part starts where the log part ends: same value and same slope (A) at theta
    a, c = loss.coefficients(torch.tensor(y, dtype=torch.float64))
    left_limit = omega * math.log(1 + (theta / eps) ** (alpha - y))
    assert a.item() * theta - c.item() == pytest.approx(left_limit, rel=1e-12)
    assert abs(v_out - v_in) < 3 * a.item() * h
    assert g_in == pytest.approx(g_out, rel=1e-5)
    assert abs(g_out) == pytest.approx(a.item(), rel=1e-6)
    # slope sign follows the sign of y_hat - y
    assert math.copysign(1.0, g_out) == side
    # finite differences from each side agree with autograd
    step = 1e-6
    fd_in = (value_and_slope(theta - h)[0] - value_and_slope(theta - h - step)[0]) / step
    fd_out = (value_and_slope(theta + h + step)[0] - value_and_slope(theta + h)[0]) / step
    assert fd_in == pytest.approx(side * g_in, rel=1e-4)
    assert fd_out == pytest.approx(side * g_out, rel=1e-4)


@PROPS
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.5))
def test_awing_symmetric_and_zero_at_target(y, d):
    loss = AdaptiveWingLoss()
    target = _px([y, y, y])
    pred = _px([y + d, y - d, y])
    out = loss.elementwise(pred, target).flatten()
    assert out[0].item() == pytest.approx(out[1].item(), rel=1e-12, abs=1e-12)
    assert out[2].item() == 0.0
    assert out[0].item() >= 0.0
    assert out[0].item() == pytest.approx(awing_ref(y, y + d), rel=1e-9, abs=1e-12)


def test_awing_zero_gradient_at_target_and_finite_everywhere():
    loss = AdaptiveWingLoss()
    target = gaussian_heatmaps(torch.tensor([[[4.3, 3.8]]], dtype=torch.float64), 9, 1.0)
    target.requires_grad_(True)
    pred = target.detach().clone().requires_grad_(True)
    out = loss(pred, target)
    assert out.item() == 0.0
    gp, gt = torch.autograd.grad(out, (pred, target))
    assert torch.all(gp == 0) and torch.isfinite(gt).all()


def test_awing_gradcheck():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 2, 3, 4, dtype=torch.float64, generator=g)
    target[0, 0, 0, :2] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    # differences spread over both branches, away from the kinks |d| = 0 and |d| = theta
    offsets = torch.tensor([-0.9, -0.4, -0.1, 0.05, 0.2, 0.45, 0.7, 1.1], dtype=torch.float64)
    pred = (target + offsets.repeat(6).reshape(target.shape)).requires_grad_(True)
    weight = weighted_loss_map(target)
    loss = AdaptiveWingLoss()
    assert torch.autograd.gradcheck(lambda p: loss(p, target, weight_map=weight), (pred,))
    target_g = target.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, t: loss(p, t), (pred, target_g))


def test_awing_params_and_validation():
    loss = AdaptiveWingLoss()
    assert (loss.alpha, loss.omega, loss.epsilon, loss.theta) == (2.1, 14.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="> 2"):
        AdaptiveWingLoss(alpha=2.0)
    for kwargs in ({"omega": 0}, {"epsilon": -1}, {"theta": float("nan")}):
        with pytest.raises(ValueError):
            AdaptiveWingLoss(**kwargs)


# --- MSE and BICE ---------------------------------------------------------------------------------------------

def test_mse_golden_value():
    pred = _px([0.5, 0.0, 1.0, 0.2])
    target = _px([0.0, 0.0, 0.5, 0.6])
    assert HeatmapMSELoss()(pred, target).item() == pytest.approx((0.25 + 0 + 0.25 + 0.16) / 4, rel=1e-12)


def test_bice_golden_values():
    logits = [2.0, -1.0, 0.0, 3.5]
    targets = [1.0, 0.0, 0.3, 0.8]

    def bce(z: float, q: float) -> float:
        p = 1 / (1 + math.exp(-z))
        return -(q * math.log(p) + (1 - q) * math.log(1 - p))

    want = [bce(z, q) for z, q in zip(logits, targets)]
    assert want[0] == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-12)   # -ln(sigmoid(2))
    assert want[2] == pytest.approx(math.log(2.0), rel=1e-12)                  # p = 1/2 for any q
    loss = BICELoss()
    got = loss.elementwise(_px(logits), _px(targets)).flatten().tolist()
    assert got == pytest.approx(want, rel=1e-12)
    assert loss(_px(logits), _px(targets)).item() == pytest.approx(sum(want) / 4, rel=1e-12)
    # zero-target pixels are penalised (bilateral): a positive logit on a zero pixel costs ln(1 + e^z)
    assert loss(_px([4.0]), _px([0.0])).item() == pytest.approx(math.log(1 + math.exp(4.0)), rel=1e-12)
    # stable for large logits (float32)
    big = loss(_px([100.0, -100.0], torch.float32), _px([0.0, 1.0], torch.float32))
    assert torch.isfinite(big) and big.item() == pytest.approx(100.0, rel=1e-6)


def test_bice_gradcheck_and_minimum():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    target = torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    weight = torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=g) + 0.5
    loss = BICELoss()
    assert torch.autograd.gradcheck(lambda z, t: loss(z, t, weight_map=weight), (logits, target))
    # gradient w.r.t. the logit is (sigmoid(z) - q) / numel: zero where sigmoid(z) = q
    q = torch.tensor([0.2, 0.7], dtype=torch.float64).reshape(1, 1, 1, 2)
    z = torch.logit(q).requires_grad_(True)
    (gz,) = torch.autograd.grad(loss(z, q), z)
    assert torch.allclose(gz, torch.zeros_like(gz), atol=1e-12)


# --- weight map, mask, reduction ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", HEATMAP_LOSSES)
def test_reduction_weight_map_and_mask(name):
    g = torch.Generator().manual_seed(2)
    loss = create_heatmap_loss(name)
    pts = torch.rand(3, 2, 2, dtype=torch.float64, generator=g) * 6 + 1
    target = gaussian_heatmaps(pts, 8, 1.0)
    pred = torch.rand(3, 2, 8, 8, dtype=torch.float64, generator=g)
    per = loss.elementwise(pred, target)
    # mean over C*H*W per sample, then over the batch (= the overall mean without a mask)
    assert loss(pred, target).item() == pytest.approx(per.mean().item(), rel=1e-12)
    w = weighted_loss_map(target)
    assert loss(pred, target, weight_map=w).item() == pytest.approx((per * w).mean().item(), rel=1e-12)
    # a scalar or per-channel weight broadcasts; a weight that would enlarge the output is refused
    assert loss(pred, target, weight_map=torch.tensor(2.0)).item() == pytest.approx(2 * per.mean().item())
    with pytest.raises(ValueError):
        loss(pred, target, weight_map=torch.ones(2, 3, 2, 8, 8))
    # mask: masked channels contribute 0 but stay in the denominator; NaN targets there are harmless
    mask = torch.tensor([[True, False], [True, True], [False, False]])
    t_nan = target.clone()
    t_nan[0, 1] = float("nan")
    t_nan[2] = float("nan")
    p = pred.clone().requires_grad_(True)
    out = loss(p, t_nan, weight_map=w, mask=mask)
    want = ((per * w) * mask[..., None, None]).sum(dim=(1, 2, 3)) / (2 * 8 * 8)
    assert out.item() == pytest.approx(want.mean().item(), rel=1e-12)
    (gp,) = torch.autograd.grad(out, p)
    assert torch.isfinite(gp).all() and torch.all(gp[2] == 0) and torch.all(gp[0, 1] == 0)
    # float mask weights channels
    fmask = torch.tensor([[1.0, 0.5], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    want_f = (per * fmask[..., None, None]).mean(dim=(1, 2, 3)).mean()
    assert loss(pred, target, mask=fmask).item() == pytest.approx(want_f.item(), rel=1e-12)
    with pytest.raises(ValueError):
        loss(pred, target[:, :1])
    with pytest.raises(ValueError):
        loss(pred, target, mask=mask[:, :1])


def test_float32_and_half_inputs():
    target = gaussian_heatmaps(torch.tensor([[[3.0, 4.0]]]), 8, 1.0)
    pred = (target * 0.8).half()
    for name in HEATMAP_LOSSES:
        out = create_heatmap_loss(name)(pred, target)
        assert out.dtype == torch.float32 and torch.isfinite(out)


# --- hinge residual loss --------------------------------------------------------------------------------------

def test_hinge_residual_golden_value():
    pred = torch.tensor([[[0.7, -0.2], [-1.0, 0.4]]])
    target = torch.tensor([[[0.3, 0.1], [-0.4, 0.5]]])
    # L2 = 1/2 (0.4^2 + 0.3^2 + 0.6^2 + 0.1^2) = 0.31; hinge = (0.7 - 0.5) + 0 + (1.0 - 0.5) + 0 = 0.7
    assert hinge_residual_loss(pred, target).item() == pytest.approx(1.01, abs=1e-6)
    assert hinge_residual_loss(pred, target, theta=0.0).item() == pytest.approx(0.31 + 2.3, abs=1e-6)
    # batch mean: a second sample with zero loss halves it
    pred2 = torch.cat([pred, torch.zeros(1, 2, 2)])
    target2 = torch.cat([target, torch.zeros(1, 2, 2)])
    assert hinge_residual_loss(pred2, target2).item() == pytest.approx(1.01 / 2, abs=1e-6)
    module = HingeResidualLoss(theta=0.5)
    assert module(pred, target).item() == pytest.approx(1.01, abs=1e-6)
    assert module.params() == {"name": "hinge-residual", "theta": 0.5, "unit": "heatmap_px", "l2": "half_squared",
                               "reduction": "sum_landmarks_mean_batch"}


def test_hinge_residual_mask_and_gradient():
    pred = torch.tensor([[[0.7, -0.2], [-1.0, 0.4]]], requires_grad=True)
    target = torch.tensor([[[0.3, 0.1], [float("nan"), 0.5]]])
    out = hinge_residual_loss(pred, target, mask=torch.tensor([[True, False]]))
    # only landmark 0: 1/2 (0.16 + 0.09) + 0.2
    assert out.item() == pytest.approx(0.325, abs=1e-6)
    (g,) = torch.autograd.grad(out, pred)
    # d/dp [1/2 (t - p)^2 + max(0, |p| - theta)] = (p - t) + sign(p) [|p| > theta]
    assert torch.allclose(g, torch.tensor([[[0.4 + 1.0, -0.3], [0.0, 0.0]]]), atol=1e-6)
    fm = hinge_residual_loss(pred.detach(), target.nan_to_num(0.0), mask=torch.tensor([[2.0, 0.0]]))
    assert fm.item() == pytest.approx(0.65, abs=1e-6)
    with pytest.raises(ValueError):
        hinge_residual_loss(pred, target[:, :1])
    with pytest.raises(ValueError):
        hinge_residual_loss(pred, target, theta=-1.0)


# --- factory and params ---------------------------------------------------------------------------------------

def test_factory_and_params():
    assert HEATMAP_LOSSES == ("awing", "mse", "bice")
    for name, cls, kind in (("awing", AdaptiveWingLoss, "heatmap"), ("mse", HeatmapMSELoss, "heatmap"),
                            ("bice", BICELoss, "logits")):
        loss = create_heatmap_loss(name)
        assert isinstance(loss, cls) and loss.name == name
        p = loss.params()
        assert p["name"] == name and p["input"] == kind
        assert p["reduction"] == "mean_pixels_channels_mean_batch"
        json.dumps(p)
        rebuilt = create_heatmap_loss(p["name"], **{k: p[k] for k in AWING_DEFAULTS if k in p})
        assert rebuilt.params() == p
    aw = create_heatmap_loss("awing", omega=10, theta=0.4)
    assert aw.params() == {"name": "awing", "input": "heatmap", "reduction": "mean_pixels_channels_mean_batch",
                           "alpha": 2.1, "omega": 10.0, "epsilon": 1.0, "theta": 0.4}
    with pytest.raises(KeyError, match="awing"):
        create_heatmap_loss("wing")
    with pytest.raises(ValueError):
        create_heatmap_loss("mse", theta=0.5)
    with pytest.raises(ValueError):
        create_heatmap_loss("awing", w=10)
