"""Losses: hand-computed golden values, reduction and mask, Wing's constant and continuity, and properties."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facelm.losses import LOSSES, L1Loss, L2Loss, SmoothL1Loss, WingLoss, create_loss, loss_params

LN6 = math.log(6.0)
PROPS = settings(max_examples=60, deadline=None)


def _t(*values: float, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# --- golden values ------------------------------------------------------------------------------------------

def test_wing_golden_values():
    wing = WingLoss(10, 2)
    assert wing.elementwise(_t(10.0)).item() == pytest.approx(10 * LN6, abs=1e-9)
    # linear region: |x| - C = 20 - (10 - 10 ln 6) = 10 + 10 ln 6
    assert wing.elementwise(_t(20.0)).item() == pytest.approx(20 - wing.C, abs=1e-9)
    assert wing.elementwise(_t(-20.0)).item() == pytest.approx(10 + 10 * LN6, abs=1e-9)
    assert wing.elementwise(_t(1.0)).item() == pytest.approx(10 * math.log(1.5), abs=1e-9)


def test_wing_constant():
    # C = w - w ln(1 + w/eps); NOT the misprinted 1 - ln(1 + w/eps)
    assert WingLoss(10, 2).C == pytest.approx(10 - 10 * LN6, abs=1e-12)
    assert WingLoss(10, 2).C == pytest.approx(-7.917595, abs=1e-6)
    assert WingLoss(15, 3).C == pytest.approx(15 - 15 * LN6, abs=1e-12)
    assert WingLoss(15, 3).C == pytest.approx(-11.876393, abs=1e-6)
    assert WingLoss(10, 2).C != pytest.approx(1 - LN6)


def test_other_golden_values():
    sl1 = SmoothL1Loss()
    assert sl1.elementwise(_t(0.5)).item() == pytest.approx(0.125)
    assert sl1.elementwise(_t(3.0)).item() == pytest.approx(2.5)
    assert sl1.elementwise(_t(-3.0)).item() == pytest.approx(2.5)
    assert L2Loss().elementwise(_t(3.0)).item() == pytest.approx(4.5)
    assert L1Loss().elementwise(_t(-3.0)).item() == pytest.approx(3.0)


# a batch of N = 2 samples with L = 2 landmarks; pred - target per sample: [[1, 2], [3, 0]] and [[0, 0], [0, -4]]
PRED = torch.zeros(2, 2, 2)
TARGET = -torch.tensor([[[1.0, 2.0], [3.0, 0.0]], [[0.0, 0.0], [0.0, -4.0]]])


@pytest.mark.parametrize(("name", "expected"), [
    ("l1", (6 + 4) / 2),
    ("l2", (0.5 * (1 + 4 + 9) + 0.5 * 16) / 2),
    ("smooth-l1", ((0.5 + 1.5 + 2.5) + 3.5) / 2),
    ("wing", (10 * (math.log(1.5) + math.log(2) + math.log(2.5)) + 10 * math.log(3)) / 2),
])
def test_sum_over_coordinates_mean_over_batch(name, expected):
    assert create_loss(name)(PRED, TARGET).item() == pytest.approx(expected, rel=1e-6)


def test_mask():
    loss = L1Loss()
    mask = torch.tensor([[True, False], [False, True]])
    assert loss(PRED, TARGET, mask).item() == pytest.approx((3 + 4) / 2)  # all-masked samples still count in N
    assert loss(PRED, TARGET, mask.float()).item() == pytest.approx((3 + 4) / 2)
    weights = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    assert loss(PRED, TARGET, weights).item() == pytest.approx((3 + 0.5 * 3 + 4) / 2)
    assert loss(PRED, TARGET, torch.zeros(2, 2, dtype=torch.bool)).item() == 0.0


@pytest.mark.parametrize("name", list(LOSSES))
def test_masked_nan_targets_give_finite_value_and_gradient(name):
    pred = PRED.clone().requires_grad_(True)
    target = TARGET.clone()
    target[0, 1] = float("nan")
    mask = torch.tensor([[True, False], [True, True]])
    value = create_loss(name)(pred, target, mask)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[0, 1] == 0).all()


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, L, 2\)"):
        L1Loss()(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\(N, L, 2\)"):
        L1Loss()(torch.zeros(2, 3, 2), torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="mask"):
        L1Loss()(PRED, TARGET, torch.ones(2, 3, dtype=torch.bool))


def test_low_precision_inputs_are_upcast():
    pred = PRED.to(torch.bfloat16)
    value = WingLoss()(pred, TARGET.to(torch.bfloat16))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(WingLoss()(PRED, TARGET).item(), rel=1e-6)


# --- Wing details ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("w", "eps"), [(10, 2), (15, 3), (5, 0.5), (1, 4)])
def test_wing_continuous_at_w(w, eps):
    wing = WingLoss(w, eps)
    for d in (1e-7, 1e-9):
        for sign in (1, -1):
            inner, outer = wing.elementwise(sign * _t(w - d, w + d)).tolist()
            assert abs(outer - inner) < 1e-6
    inside = w * math.log1p(w / eps)
    assert wing.elementwise(_t(float(w))).item() == pytest.approx(inside, abs=1e-9)  # linear branch at |x| = w


@pytest.mark.parametrize("name", list(LOSSES))
def test_zero_at_zero_and_symmetric(name):
    loss = create_loss(name)
    x = _t(0.0, 0.3, 1.0, 2.5, 9.99, 10.0, 17.0, 250.0)
    assert loss.elementwise(_t(0.0)).item() == 0.0
    torch.testing.assert_close(loss.elementwise(x), loss.elementwise(-x), rtol=0, atol=0)


def test_create_loss_defaults_and_overrides():
    assert isinstance(create_loss("wing"), WingLoss)
    assert (create_loss("wing").w, create_loss("wing").eps) == (10, 2)
    assert (create_loss("wing", arch="cnn6").w, create_loss("wing", arch="cnn6").eps) == (10, 2)
    assert (create_loss("wing", arch="cnn7").w, create_loss("wing", arch="cnn7").eps) == (15, 3)
    custom = create_loss("wing", arch="cnn7", wing_w=12)
    assert (custom.w, custom.eps) == (12, 3)
    custom = create_loss("wing", arch="resnet50", wing_w=8, wing_eps=1)
    assert (custom.w, custom.eps) == (8, 1)
    assert isinstance(create_loss("l1", arch="cnn7"), L1Loss)
    assert isinstance(create_loss("smooth-l1"), SmoothL1Loss)
    assert isinstance(create_loss("l2"), L2Loss)


def test_create_loss_errors():
    with pytest.raises(KeyError, match="wing"):
        create_loss("huber")
    with pytest.raises(ValueError, match="only apply"):
        create_loss("l1", wing_w=10)
    with pytest.raises(ValueError, match="resnet50"):
        create_loss("wing", arch="resnet50")
    with pytest.raises(ValueError, match="w must be"):
        WingLoss(0, 2)
    with pytest.raises(ValueError, match="tiny"):
        WingLoss(10, 0)
    with pytest.raises(ValueError, match="eps must be"):
        create_loss("wing", wing_eps=-1.0)
    with pytest.raises(ValueError, match="w must be"):
        WingLoss(float("nan"), 2)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_params_json_and_round_trip(name):
    loss = create_loss(name, arch="cnn7")
    p = json.loads(json.dumps(loss_params(loss)))
    assert p["name"] == name and p["unit"] == "crop_px"
    rebuilt = create_loss(p["name"], wing_w=p.get("w"), wing_eps=p.get("eps"))
    assert loss_params(rebuilt) == p
    if name == "wing":
        assert (p["w"], p["eps"]) == (15, 3)
        assert p["C"] == pytest.approx(15 - 15 * LN6)
    with pytest.raises(TypeError):
        loss_params(torch.nn.MSELoss())


# --- properties -----------------------------------------------------------------------------------------------

@st.composite
def pred_target(draw):
    """(N, L, 2) float64 pairs on a 1/64 px grid (differences are 0 or >= 1/64, so no underflow), some equal."""
    n, l = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    k = n * l * 2
    grid = st.integers(-64 * 300, 64 * 300)
    p = draw(st.lists(grid, min_size=k, max_size=k))
    t = draw(st.lists(grid, min_size=k, max_size=k))
    same = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    t = [pi if s else ti for pi, ti, s in zip(p, t, same)]
    as_t = lambda v: torch.tensor(v, dtype=torch.float64).view(n, l, 2) / 64  # noqa: E731
    return as_t(p), as_t(t)


@pytest.mark.parametrize("name", list(LOSSES))
@PROPS
@given(pt=pred_target())
def test_nonnegative_zero_iff_equal_symmetric(name, pt):
    pred, target = pt
    loss = create_loss(name)
    value = loss(pred, target).item()
    assert value >= 0
    assert (value == 0) == bool(torch.equal(pred, target))
    assert loss(target, pred).item() == value
    assert loss(2 * target - pred, target).item() == pytest.approx(value, rel=1e-12)  # x -> -x


finite = st.floats(-1e3, 1e3, allow_nan=False)
wing_params = st.tuples(st.floats(0.5, 30), st.floats(0.05, 10))


@PROPS
@given(x=finite, params=wing_params)
def test_wing_gradient(x, params):
    w, eps = params
    wing = WingLoss(w, eps)
    xt = _t(x).requires_grad_(True)
    wing.elementwise(xt).sum().backward()
    g = xt.grad.item()
    a = abs(x)
    if a == 0:
        assert g == 0
    elif a >= w:
        assert abs(g) == 1.0 and math.copysign(1.0, g) == math.copysign(1.0, x)
    else:
        assert abs(g) == pytest.approx(w / (eps + a), rel=1e-9)
        assert math.copysign(1.0, g) == math.copysign(1.0, x)


@PROPS
@given(pt=pred_target())
def test_wing_gradient_through_forward_is_sign_over_n_in_linear_region(pt):
    pred, target = pt
    pred = pred.clone().requires_grad_(True)
    WingLoss(10, 2)(pred, target).backward()
    diff = (pred - target).detach()
    linear = diff.abs() >= 10
    torch.testing.assert_close(pred.grad[linear] * pred.shape[0], diff[linear].sign(), rtol=0, atol=1e-12)


@PROPS
@given(x=finite.filter(lambda v: abs(v) > 1e-12), params=wing_params)  # no underflow
def test_wing_above_l1_when_w_over_eps_exceeds_e_minus_1(x, params):
    # w ln(1 + |x|/eps) > |x| on (0, w) iff ln(1 + w/eps) > 1 (concave, positive at both ends), and then C < 0
    w, eps = params
    eps = min(eps, w / 2)  # w/eps >= 2 > e - 1
    assert WingLoss(w, eps).elementwise(_t(x)).item() > abs(x)


@PROPS
@given(x=finite, y=finite, params=wing_params)
def test_wing_monotone_in_abs(x, y, params):
    wing = WingLoss(*params)
    lo, hi = sorted((abs(x), abs(y)))
    a, b = wing.elementwise(_t(lo, hi)).tolist()
    assert a <= b + 1e-12 * max(1.0, b)  # an ulp of slack where the two branches meet


@PROPS
@given(x=finite)
def test_smooth_l1_below_l1_and_l2(x):
    v = SmoothL1Loss().elementwise(_t(x)).item()
    assert v <= L1Loss().elementwise(_t(x)).item()
    assert v <= L2Loss().elementwise(_t(x)).item()
