"""Model registry and CNN-6/7: shapes, parameter counts against the paper, init contract, channels-last/bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from facelm.models import CNN6, CNN7, create_model, list_models, model_input_size

# coordinate regressors (CNN-6/7): a mean-shape head, differentiable forward; the heatmap family (hourglass, smt)
# has its own tests in test_hourglass.py (forward decodes by argmax, so it has no useful gradient or mean shape)
REGRESSORS = [n for n in list_models() if n in ("cnn6", "cnn7")]

TINY = 0.25  # width of the small models used for shape/backward checks
LANDMARK_COUNTS = (5, 19, 29, 68, 98)


def _last_linear(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 255.0


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _expected_params(channels: tuple[int, ...], input_size: int, hidden: int, num_landmarks: int) -> int:
    """Parameter count from the architecture description (3x3 convs with bias, 2x2 pools, two FCs with bias)."""
    n, c_in = 0, 3
    for c in channels:
        n += 9 * c_in * c + c
        c_in = c
    side = input_size // 2 ** len(channels)
    n += c_in * side * side * hidden + hidden
    n += hidden * 2 * num_landmarks + 2 * num_landmarks
    return n


def test_registry_lists_paper_models():
    assert {"cnn6", "cnn7"} <= set(list_models())
    assert list_models() == sorted(list_models())
    assert model_input_size("cnn6") == 64
    assert model_input_size("cnn7") == 128


def test_unknown_model_lists_known_names():
    with pytest.raises(KeyError, match="cnn6.*cnn7"):
        create_model("cnn8", 68)
    with pytest.raises(KeyError, match="cnn6"):
        model_input_size("resnet9000")


@pytest.mark.parametrize("name", list_models())
def test_attributes(name):
    model = create_model(name, 19, width=TINY)
    assert model.arch == name
    assert model.input_size == model_input_size(name)
    assert model.num_landmarks == 19
    assert model.width == TINY
    assert (model.pixel_mean, model.pixel_std) == (127.5, 128.0)


@pytest.mark.parametrize("name", REGRESSORS)
@pytest.mark.parametrize("num_landmarks", LANDMARK_COUNTS)
def test_forward_backward_shape(name, num_landmarks):
    torch.manual_seed(0)
    model = create_model(name, num_landmarks, width=TINY)
    x = _images(2, model.input_size)
    out = model(x)
    assert out.shape == (2, num_landmarks, 2)
    assert out.dtype == torch.float32
    out.square().sum().backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", REGRESSORS)
def test_zero_head_outputs_mean_shape(name):
    size = model_input_size(name)
    rng = np.random.default_rng(0)
    mean_shape = rng.uniform(-0.5, size - 0.5, size=(19, 2))
    model = create_model(name, 19, mean_shape=mean_shape, width=TINY)
    with torch.no_grad():
        _last_linear(model).weight.zero_()
        out = model(_images(3, size))
    expected = torch.as_tensor(mean_shape, dtype=torch.float32).expand(3, 19, 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", REGRESSORS)
def test_default_init_starts_at_crop_centre(name):
    torch.manual_seed(0)
    model = create_model(name, 5, width=TINY)
    size = model.input_size
    with torch.no_grad():
        out = model(_images(2, size))
        # mid-grey normalises to exactly 0 and every hidden bias starts at 0, so the output is the bias exactly:
        # this pins the (x - 127.5) / 128 input contract as well as the head's bias
        grey = model(torch.full((1, 3, size, size), 127.5))
    centre = (size - 1) / 2
    torch.testing.assert_close(grey, torch.full((1, 5, 2), centre), rtol=0, atol=1e-5)
    # small head weights: an untrained model predicts (very nearly) the mean shape
    assert (out - centre).abs().max() < 1.0


def test_parameter_counts_match_paper(capsys):
    cnn6 = create_model("cnn6", 68)
    cnn7 = create_model("cnn7", 68)
    n6, n7 = _n_params(cnn6), _n_params(cnn7)
    with capsys.disabled():
        print(f"\nCNN-6 (L=68): {n6:,} parameters; CNN-7 (L=68): {n7:,}; sum: {n6 + n7:,}")
    assert n6 == _expected_params(CNN6.CHANNELS, 64, 1024, 68) == 3_806_152
    assert n7 == _expected_params(CNN7.CHANNELS, 128, 1024, 68) == 8_508_168
    # the paper's Table 6 numbers, within 3% of the exact counts
    assert abs(3.8e6 - n6) <= 0.03 * n6
    assert abs(12.3e6 - (n6 + n7)) <= 0.03 * (n6 + n7)
    # width=1 is the paper's network: 2x2x512 features into FC 1024
    assert _last_linear(cnn6).in_features == 1024 and _last_linear(cnn6).out_features == 136
    assert cnn7.fc.in_features == 2 * 2 * 512


@pytest.mark.parametrize("name", REGRESSORS)
def test_channels_last_bf16_autocast(name):
    torch.manual_seed(0)
    model = create_model(name, 19, width=TINY)
    x = _images(2, model.input_size)
    with torch.no_grad():
        ref = model(x)
    model = model.to(memory_format=torch.channels_last)
    xcl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(model(xcl), ref, rtol=0, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(xcl)
    assert out.shape == (2, 19, 2)
    assert out.dtype == torch.float32  # the output layer runs in float32: bf16 would quantise 64-128 px to 0.5 px
    assert (out.detach() - ref).abs().max() < 0.05
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_input_validation(name):
    model = create_model(name, 5, width=TINY)
    with pytest.raises(ValueError, match="expects input of shape"):
        model(torch.zeros(1, 3, model.input_size // 2, model.input_size // 2))
    with pytest.raises(ValueError, match="mean_shape"):
        create_model(name, 5, mean_shape=np.zeros((4, 2)), width=TINY)
    with pytest.raises(ValueError, match="mean_shape"):
        create_model(name, 5, mean_shape=np.full((5, 2), np.nan), width=TINY)
    with pytest.raises(ValueError, match="width"):
        create_model(name, 5, width=0)
    with pytest.raises(ValueError, match="num_landmarks"):
        create_model(name, 0, width=TINY)


def test_the_registry_knows_each_architectures_stage():
    from facelm.models import model_stage

    assert {a: model_stage(a) for a in list_models()} == {"cnn6": 1, "cnn6r": 2, "cnn7": 2, "hourglass": 1,
                                                          "smt": 1}
    with pytest.raises(KeyError):
        model_stage("nope")


def test_cnn6r_is_the_cnn6_network_as_stage_2():
    from facelm.models import model_network

    assert model_network("cnn6r") == "cnn6" and model_network("cnn6") == "cnn6" and model_network("cnn7") == "cnn7"
    r, s = create_model("cnn6r", 68, width=TINY), create_model("cnn6", 68, width=TINY)
    assert r.arch == "cnn6r" and model_input_size("cnn6r") == 64
    assert {k: v.shape for k, v in r.state_dict().items()} == {k: v.shape for k, v in s.state_dict().items()}


@pytest.mark.parametrize("name", ["cnn6", "cnn7"])
def test_deeper_blocks_count_and_validate(name):
    """``convs`` = 3x3 convs per block: each added conv is a C -> C 3x3 conv with bias in every block."""
    base, deep = create_model(name, 68), create_model(name, 68, convs=2)
    cls = CNN6 if name == "cnn6" else CNN7
    extra = sum(9 * c * c + c for c in cls.CHANNELS)
    assert _n_params(deep) == _n_params(base) + extra
    assert deep.convs == 2 and "convs=2" in repr(deep)
    assert deep(_images(2, deep.input_size)).shape == (2, 68, 2)
    for bad in (0, 5, 1.5, True):
        with pytest.raises(ValueError, match="convs"):
            create_model(name, 5, width=TINY, convs=bad)


@pytest.mark.parametrize("convs", [2, 3])
def test_a_deeper_network_grown_from_a_trained_one_computes_the_same(convs):
    """Net2DeeperNet warm start: the shallow network's convs fill the first conv of each block, the added ones
    start as identities, so the outputs are the same; training then moves the added convs."""
    torch.manual_seed(0)
    shallow = create_model("cnn6", 19, width=TINY)
    for p in shallow.parameters():  # not the init: biases and head non-zero, as in a trained network
        p.data.add_(torch.randn_like(p) * 0.05)
    deep = create_model("cnn6", 19, width=TINY, convs=convs)
    state = deep.deepened_state(shallow.state_dict())
    deep.load_state_dict(state)
    x = _images(4, 64, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(deep(x), shallow(x), atol=1e-4, rtol=1e-5)
    added = [m for m in deep.features if isinstance(m, nn.Conv2d)][1]
    assert added.weight.shape[0] == added.weight.shape[1]
    # a network that is not shallower (same depth, or deeper) is not grown
    assert shallow.deepened_state(deep.state_dict()) is None
    assert deep.deepened_state(deep.state_dict()) is None


@pytest.mark.parametrize("convs", [1, 3])
def test_a_128px_refiner_started_from_a_64px_network_computes_it_on_the_2x2_means(convs):
    """cnn6r at 128 px: a 6x6 stride-2 first conv. Warm-started from a trained 64-px network (also a shallower
    one), it computes that network on the crop's 2x2 means, in 128-px crop pixels (x 2 + 0.5); training then uses
    the detail the means hide."""
    torch.manual_seed(0)
    small = create_model("cnn6", 19, width=TINY)
    for p in small.parameters():  # not the init: biases and head non-zero, as in a trained network
        p.data.add_(torch.randn_like(p) * 0.05)
    big = create_model("cnn6r", 19, width=TINY, convs=convs, input_size=128)
    assert big.input_size == 128 and big.stride == 2 and "stride=2" in repr(big)
    assert model_input_size("cnn6r", input_size=128) == 128
    small_params = _n_params(create_model("cnn6r", 19, width=TINY, convs=convs))
    assert _n_params(big) == small_params + 3 * 8 * (36 - 9)  # a 6x6 first conv, not 3x3
    big.load_state_dict(big.adapted_state(small.state_dict()))
    x = _images(3, 128, seed=4)
    with torch.no_grad():
        ref = small(torch.nn.functional.avg_pool2d(x, 2))
        torch.testing.assert_close(big(x), ref * 2 + 0.5, atol=1e-3, rtol=1e-5)
        y = big(x)
    # the first conv's taps are no longer tied after a step: the detail reaches the loss
    opt = torch.optim.SGD(big.parameters(), lr=1e-3)
    (big(x) - y - 1).square().mean().backward()
    opt.step()
    w = big.features[0].weight.detach()
    assert not torch.allclose(w[..., 0::2, 0::2], w[..., 1::2, 1::2])
    # nothing to adapt: a network that already fits, or a 64-px network asked to take a 128-px one
    assert big.adapted_state(big.state_dict()) is None
    assert create_model("cnn6r", 19, width=TINY, convs=convs).adapted_state(big.state_dict()) is None
    for bad in (32, 96, 256):
        with pytest.raises(ValueError, match="input_size"):
            create_model("cnn6r", 19, width=TINY, input_size=bad)
