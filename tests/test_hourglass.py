"""Stacked hourglass heatmap models (AWing / SMT-Net families): shapes, CoordConv, residual branch, decoding,
ONNX export, gradients, parameter counts and the registry options."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
import torch

from facelm.heatmap import decode_heatmaps, heatmap_argmax, heatmap_to_crop
from facelm.models import HourglassNet, create_model, list_models, model_input_size, model_options
from facelm.models.hourglass import BOUNDARY_THRESHOLD, coord_channels

TINY = {"input_size": 32, "channels": 8, "depth": 2}  # 8 x 8 heatmaps, 2 x 2 centre
L = 5
FLAGS = list(itertools.product([False, True], repeat=3))  # (boundary, coordconv, residual)


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models here run in milliseconds on one thread; on a busy 2-core machine a second OpenMP thread
    makes them ~10x slower (spin-waiting), so pin one thread (the speed test sets its own)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 255.0


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tiny(stacks: int = 2, boundary: bool = False, coordconv: bool = False, residual: bool = False,
          seed: int = 0, **kw) -> HourglassNet:
    torch.manual_seed(seed)
    return HourglassNet(L, stacks=stacks, boundary=boundary, coordconv=coordconv, residual=residual,
                        **{**TINY, **kw})


def _sharpen_heads(model: HourglassNet) -> None:
    """Larger heatmap-head weights: clear maxima, so argmax is not decided by float rounding (torch vs ORT)."""
    with torch.no_grad():
        for head in model.heads:
            head.weight.normal_(0.0, 1.0)


# --- shapes ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stacks", [1, 2])
@pytest.mark.parametrize("boundary, coordconv, residual", FLAGS)
def test_output_shapes(stacks, boundary, coordconv, residual):
    model = _tiny(stacks, boundary, coordconv, residual)
    assert (model.input_size, model.heatmap_size, model.stacks) == (32, 8, stacks)
    assert (model.boundary, model.coordconv, model.residual, model.family) == \
        (boundary, coordconv, residual, "heatmap")
    x = _images(2, 32)
    out = model(x)
    assert out.shape == (2, L, 2) and out.dtype == torch.float32
    assert bool(((out >= -0.5) & (out <= 31.5)).all())  # inside the crop (decoded from an 8 x 8 heatmap)

    ft = model.forward_train(x)
    assert set(ft) == {"heatmaps", "boundary", "residual"}
    assert len(ft["heatmaps"]) == stacks
    assert all(h.shape == (2, L, 8, 8) for h in ft["heatmaps"])
    if boundary:
        assert len(ft["boundary"]) == stacks and all(b.shape == (2, 1, 8, 8) for b in ft["boundary"])
    else:
        assert ft["boundary"] is None
    if residual:
        assert len(ft["residual"]) == stacks and all(r.shape == (2, L, 2) for r in ft["residual"])
    else:
        assert ft["residual"] is None


@pytest.mark.parametrize("residual", [False, True])
def test_residual_branch_only_when_asked(residual):
    model = _tiny(residual=residual)
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith("residual_heads.") for n in names) == residual
    assert len(model.residual_heads) == (2 if residual else 0)
    if residual:  # two FC layers per stack from the centre (8 channels x 2 x 2), 2L outputs
        fcs = [m for m in model.residual_heads[0] if isinstance(m, torch.nn.Linear)]
        assert len(fcs) == 2
        assert fcs[0].in_features == 8 * 2 * 2 and fcs[1].out_features == 2 * L


def test_no_remap_after_last_stack():
    model = _tiny(stacks=3, boundary=True)
    assert len(model.remap_features) == len(model.remap_heatmaps) == 2
    assert model.remap_heatmaps[0].in_channels == L + 1  # boundary channel is remapped too


# --- CoordConv ------------------------------------------------------------------------------------------------

def test_coord_channels_values():
    c = coord_channels(5)
    assert c.shape == (1, 3, 5, 5)
    xx, yy, rr = c[0]
    lin = torch.linspace(-1, 1, 5)
    torch.testing.assert_close(xx, lin.expand(5, 5))
    torch.testing.assert_close(yy, lin[:, None].expand(5, 5))
    assert float(rr.min()) == 0.0 and float(rr[2, 2]) == 0.0
    torch.testing.assert_close(rr.max(), torch.tensor(1.0))
    torch.testing.assert_close(rr[0, 0], torch.tensor(1.0))
    assert float(xx.min()) == -1.0 and float(xx.max()) == 1.0


def test_coordconv_layer_widths():
    m = _tiny(stacks=3, boundary=True, coordconv=True)
    assert m.stem[0].in_channels == 6  # RGB + x, y, r at input resolution
    assert [c.in_channels for c in m.coord_convs] == [8 + 3, 8 + 5, 8 + 5]
    m = _tiny(stacks=2, boundary=False, coordconv=True)
    assert [c.in_channels for c in m.coord_convs] == [8 + 3, 8 + 3]  # no boundary: no boundary-masked channels
    m = _tiny(stacks=2, coordconv=False)
    assert m.stem[0].in_channels == 3 and len(m.coord_convs) == 0


def test_coordconv_channels_and_boundary_mask():
    model = _tiny(stacks=2, boundary=True, coordconv=True).eval()
    x = _images(2, 32)
    with torch.no_grad():  # first stack's boundary output centred on the 0.05 threshold: the mask is on and off
        model.heads[0].weight[L].normal_(0.0, 0.5)
        model.heads[0].bias[L] = 0.0
        b0 = model.forward_train(x)["boundary"][0]
        model.heads[0].bias[L] = BOUNDARY_THRESHOLD - b0.median()
    seen: dict[str, torch.Tensor] = {}
    hooks = [model.coord_convs[i].register_forward_pre_hook(
        lambda mod, args, i=i: seen.__setitem__(f"cc{i}", args[0].detach().clone())) for i in range(2)]
    hooks.append(model.stem[0].register_forward_pre_hook(
        lambda mod, args: seen.__setitem__("stem", args[0].detach().clone())))
    with torch.no_grad():
        ft = model.forward_train(x)
    for h in hooks:
        h.remove()

    coords = coord_channels(8).expand(2, -1, -1, -1)
    # input: normalised RGB ((x - 127.5) / 128) + coordinates at 32 x 32
    torch.testing.assert_close(seen["stem"][:, :3], (x - 127.5) / 128)
    torch.testing.assert_close(seen["stem"][:, 3:], coord_channels(32).expand(2, -1, -1, -1))
    # first hourglass: x, y, r only
    assert seen["cc0"].shape == (2, 8 + 3, 8, 8)
    torch.testing.assert_close(seen["cc0"][:, 8:], coords)
    # second hourglass: x, y, r + x, y where the first stack's boundary >= 0.05, zero elsewhere
    cc1 = seen["cc1"]
    assert cc1.shape == (2, 8 + 5, 8, 8)
    torch.testing.assert_close(cc1[:, 8:11], coords)
    mask = ft["boundary"][0] >= BOUNDARY_THRESHOLD  # (2, 1, 8, 8)
    assert 0 < int(mask.sum()) < mask.numel(), "test needs a mask that is partly on"
    masked = cc1[:, 11:13]
    assert bool((masked[~mask.expand(-1, 2, -1, -1)] == 0).all())
    torch.testing.assert_close(masked, coords[:, :2] * mask)
    on = mask.expand(-1, 2, -1, -1)
    torch.testing.assert_close(masked[on], coords[:, :2][on])


# --- decoding -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("boundary, coordconv, residual", [(False, False, False), (True, True, False),
                                                           (False, False, True), (True, True, True)])
def test_forward_is_decoded_last_stack(boundary, coordconv, residual):
    model = _tiny(2, boundary, coordconv, residual).eval()
    _sharpen_heads(model)
    x = _images(3, 32, seed=1)
    with torch.no_grad():
        out = model(x)
        ft = model.forward_train(x)
    last = ft["heatmaps"][-1]
    if residual:
        hm = heatmap_argmax(last) + ft["residual"][-1]
    else:
        hm = decode_heatmaps(last)
    torch.testing.assert_close(out, heatmap_to_crop(hm, 32, 8), rtol=0, atol=1e-6)
    if not residual:  # argmax + quarter shift on a 4 px grid: crop coordinates are k + 0.5 (k integer)
        frac = (out + 0.5) % 1
        assert bool(((frac == 0) | (frac == 0.5)).all())


def test_residual_adds_to_integer_argmax():
    model = _tiny(residual=True).eval()
    with torch.no_grad():
        last_fc = model.residual_heads[-1][-1]
        last_fc.weight.zero_()
        last_fc.bias.copy_(torch.tensor([0.3, -0.2] * L))
        out = model(_images(2, 32))
        argmax = heatmap_argmax(model.forward_train(_images(2, 32))["heatmaps"][-1])
    expected = heatmap_to_crop(argmax + torch.tensor([0.3, -0.2]), 32, 8)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


# --- ONNX -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["plain", "awing", "smt"])
def test_onnx_export_matches_torch(kind, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    flags = {"plain": {}, "awing": {"boundary": True, "coordconv": True}, "smt": {"residual": True}}[kind]
    model = _tiny(2, **flags).eval()
    _sharpen_heads(model)
    path = tmp_path / f"{kind}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (_images(2, 32),), str(path), input_names=["images"], output_names=["landmarks"],
                          dynamic_axes={"images": {0: "batch"}, "landmarks": {0: "batch"}}, opset_version=17,
                          dynamo=False, do_constant_folding=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _images(3, 32, seed=5)  # a different batch size than at export: the batch axis is dynamic
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(None, {"images": x.numpy()})[0]
    assert got.shape == (3, L, 2)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


# --- training -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("boundary, coordconv, residual", [(False, False, False), (True, True, True),
                                                           (True, False, False), (False, True, True)])
def test_gradient_reaches_every_parameter(boundary, coordconv, residual):
    model = _tiny(2, boundary, coordconv, residual).train()
    ft = model.forward_train(_images(2, 32))
    loss = sum(h.square().mean() for h in ft["heatmaps"])
    if boundary:
        loss = loss + sum(b.square().mean() for b in ft["boundary"])
    if residual:
        loss = loss + sum(r.square().mean() for r in ft["residual"])
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} is unused"
        assert torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, f"{name} gets a zero gradient"


def test_channels_last_and_bf16_autocast():
    model = _tiny(2, True, True, True).eval()
    _sharpen_heads(model)
    x = _images(2, 32)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model_cl(x.contiguous(memory_format=torch.channels_last)), ref,
                                   rtol=0, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            ft = model.forward_train(x)
    assert out.shape == (2, L, 2) and out.dtype == torch.float32
    assert all(h.dtype == torch.float32 for h in ft["heatmaps"] + ft["boundary"] + ft["residual"])


# --- configuration --------------------------------------------------------------------------------------------

def test_config_round_trip():
    model = create_model("smt", L, width=0.5, boundary=True, coordconv=True, **TINY)
    cfg = model.config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["arch"] == "smt" and cfg["residual"] is True and cfg["width"] == 0.5 and cfg["channels"] == 8
    again = HourglassNet(**cfg)
    rest = {k: v for k, v in cfg.items() if k not in ("arch", "num_landmarks", "width")}
    via_registry = create_model(cfg["arch"], cfg["num_landmarks"], width=cfg["width"], **rest)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    for other in (again, via_registry):
        assert {k: v.shape for k, v in other.state_dict().items()} == shapes
        other.load_state_dict(model.state_dict())
        assert other.config() == cfg


def test_input_normalisation_and_validation():
    model = _tiny()
    assert (model.pixel_mean, model.pixel_std) == (127.5, 128.0)
    with pytest.raises(ValueError, match="expects input of shape"):
        model(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible"):
        HourglassNet(L, input_size=40, depth=2)
    with pytest.raises(ValueError, match="block"):
        HourglassNet(L, block="resnext", **TINY)
    with pytest.raises(ValueError, match="stacks"):
        HourglassNet(L, stacks=0, **TINY)
    with pytest.raises(ValueError, match="num_landmarks"):
        HourglassNet(0, **TINY)
    with pytest.raises(ValueError, match="mean_shape"):
        HourglassNet(L, mean_shape=np.zeros((L + 1, 2)), **TINY)
    HourglassNet(L, mean_shape=np.zeros((L, 2)), **TINY)  # accepted (and unused)
    with pytest.raises(ValueError, match="width"):
        HourglassNet(L, width=0, **TINY)


def test_hpm_block():
    model = _tiny(block="hpm", residual=True)
    ft = model.forward_train(_images(2, 32))
    assert ft["heatmaps"][-1].shape == (2, L, 8, 8)
    assert _n_params(model) > _n_params(_tiny(block="bottleneck", residual=True))


# --- registry -------------------------------------------------------------------------------------------------

def test_registry_lists_heatmap_models():
    assert list_models() == ["cnn6", "cnn6r", "cnn7", "hourglass", "smt"]
    assert model_input_size("hourglass") == model_input_size("smt") == 128
    assert model_input_size("hourglass", input_size=256) == 256
    assert model_input_size("smt", input_size=64, stacks=2) == 64
    assert model_input_size("cnn7") == 128
    assert model_options("cnn6") == ["convs"]  # 3x3 convs per block (facelm train --convs)
    options = set(model_options("hourglass"))
    assert {"stacks", "channels", "depth", "input_size", "boundary", "coordconv"} <= options


def test_registry_defaults_and_options():
    hg = create_model("hourglass", L)
    assert isinstance(hg, HourglassNet) and hg.arch == "hourglass"
    assert (hg.input_size, hg.heatmap_size, hg.stacks, hg.features, hg.depth) == (128, 32, 2, 64, 3)
    assert not (hg.boundary or hg.coordconv or hg.residual)
    sm = create_model("smt", L, **TINY)
    assert sm.arch == "smt" and sm.residual and sm.stacks == 2
    hg = create_model("hourglass", L, stacks=1, boundary=True, coordconv=True, width=0.5, **TINY)
    assert (hg.stacks, hg.boundary, hg.coordconv, hg.features, hg.width) == (1, True, True, 4, 0.5)
    assert create_model("hourglass", L, width=2.0, **TINY).features == 16  # width multiplies channels


@pytest.mark.parametrize("name", ["cnn6", "cnn7"])
def test_regressors_reject_options(name):
    with pytest.raises(TypeError, match=f"{name}.*'stacks'.*accepted: convs"):
        create_model(name, L, width=0.25, stacks=2)
    with pytest.raises(TypeError, match="input_size"):
        model_input_size(name, input_size=256)
    assert create_model(name, L, width=0.25).input_size == model_input_size(name)


def test_hourglass_rejects_unknown_option():
    with pytest.raises(TypeError, match="'dropout'.*accepted: stacks"):
        create_model("hourglass", L, dropout=0.5)


# --- sizes ----------------------------------------------------------------------------------------------------

def test_paper_config_parameter_counts(capsys):
    paper = {"stacks": 4, "channels": 256, "depth": 4, "input_size": 256}
    with torch.device("meta"):  # shapes only: no memory, no init time
        awing_hpm = HourglassNet(68, boundary=True, coordconv=True, block="hpm", **paper)
        awing_bottleneck = HourglassNet(68, boundary=True, coordconv=True, **paper)
        plain = HourglassNet(68, **paper)
        smt_hpm = HourglassNet(68, residual=True, block="hpm", **{**paper, "stacks": 2})
        small = HourglassNet(68)
        small_smt = HourglassNet(68, residual=True)
    counts = {name: _n_params(m) for name, m in [("awing_hpm", awing_hpm), ("awing_bottleneck", awing_bottleneck),
                                                 ("plain_bottleneck", plain), ("smt_hpm_2stacks", smt_hpm),
                                                 ("small_default", small), ("small_smt", small_smt)]}
    with capsys.disabled():
        print("\nhourglass parameter counts (L=68): " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    assert awing_hpm.heatmap_size == 64
    # AWing's 4-stack network (Bulat's HPM blocks, like the reference FAN code): ~24 M
    assert 22e6 < counts["awing_hpm"] < 26e6
    # Newell bottleneck blocks, same layout: about half (3x3 at C/2 instead of three 3x3 convs)
    assert 11e6 < counts["awing_bottleneck"] < 15e6
    assert counts == {"awing_hpm": 24_098_068, "awing_bottleneck": 13_214_740, "plain_bottleneck": 12_935_760,
                      "smt_hpm_2stacks": 14_273_496, "small_default": 350_040, "small_smt": 944_744}
