"""Heatmap models (hourglass, smt) through the shared training loop, checkpoints, export and evaluate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facelm.checkpoint import load_checkpoint
from facelm.cli import app
from facelm.config import TrainConfig
from facelm.errors import UsageError
from facelm.heatmap import crop_to_heatmap, gaussian_heatmaps
from facelm.heatmap.objective import HeatmapObjective
from facelm.models import create_model
from facelm.prepare import PrepareOptions, prepare
from facelm.schemes import get_scheme
from facelm.synthetic import make_dataset
from facelm.train import load_model_from_checkpoint, train

TINY = dict(stacks=2, input_size=32, width=0.125)  # 64 * 0.125 = 8 channels, 8 px heatmaps


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-hm")
    csv, _ = make_dataset(root / "raw", n=32, seed=2)
    prepare(PrepareOptions(source=csv, out=root / "prep", fmt="csv", holdout=0.25, workers=1))
    return root / "prep"


def _cfg(data_dir, out, **kw):
    base = dict(data=str(data_dir), out=str(out), arch="hourglass", loss="awing", steps=30, batch_size=8,
                warmup=3, lr=3e-3, val_every=15, log_every=5, threads=1, seed=0, **TINY)
    base.update(kw)
    return TrainConfig(**base).filled()


def test_config_defaults_and_family_checks(data_dir, tmp_path):
    c = TrainConfig(data="d", out="o", arch="hourglass").filled()
    assert c.loss == "awing" and c.sigma == 1.0 and c.sigma_schedule == "fixed" and c.heatmap
    s = TrainConfig(data="d", out="o", arch="smt").filled()
    assert s.sigma == 2.0 and s.sigma_schedule == "temporal"
    assert TrainConfig(data="d", out="o").filled().loss == "wing"
    for bad in (dict(arch="cnn6", loss="awing"), dict(arch="hourglass", loss="wing"),
                dict(arch="cnn6", stacks=2), dict(arch="hourglass", recipe="paper")):
        with pytest.raises(UsageError):
            TrainConfig(data="d", out="o", **bad).filled()


@pytest.mark.parametrize("kw", [dict(loss="awing", loss_map=True, boundary=True, coordconv=True),
                                dict(loss="mse"), dict(arch="smt", loss="bice")])
def test_heatmap_training_learns_and_round_trips_through_checkpoint_and_onnx(data_dir, tmp_path, kw):
    from facelm.export import ExportOptions, export, make_session, run_session

    res = train(_cfg(data_dir, tmp_path / "run", **kw))
    losses = [r["loss"] for r in res.history if "loss" in r]
    assert losses[-1] < losses[0]
    assert math.isfinite(res.summary["final_val_nme"])
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    meta = ck["meta"]
    assert meta["arch"] == kw.get("arch", "hourglass") and meta["input_size"] == [32, 32]
    assert meta["model_options"]["stacks"] == 2 and meta["model_options"]["input_size"] == 32
    assert meta["loss"]["family"] == "heatmap" and meta["loss"]["name"] == kw["loss"]
    assert meta["loss"]["loss_map"] is bool(kw.get("loss_map"))
    model, _ = load_model_from_checkpoint(tmp_path / "run" / "best.pt")
    assert model.boundary is bool(kw.get("boundary")) and model.residual is (kw.get("arch") == "smt")
    # the rebuilt model, its ONNX export and the checkpoint agree
    out = tmp_path / "m.onnx"
    r = export(ExportOptions(checkpoint=tmp_path / "run" / "best.pt", out=out, val=data_dir, bench_seconds=0))
    assert r.ok, r.failures
    x = torch.rand(3, 3, 32, 32) * 255
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(run_session(make_session(out), x.numpy()), ref, atol=1e-3)


def test_objective_is_zero_gradient_free_at_the_target_and_counts_every_stack():
    scheme = get_scheme("300w68")
    model = create_model("hourglass", 68, stacks=3, input_size=32, width=0.125, boundary=True)
    obj = HeatmapObjective("mse", model, scheme, sigma=1.0, schedule="spatial", delta=0.5)
    assert obj.sigmas(0.3) == [1.0, 1.0, 1.0]  # floored at 1
    obj = HeatmapObjective("mse", model, scheme, sigma=2.0, schedule="spatial", delta=0.5)
    assert obj.sigmas(0.0) == [2.0, 1.5, 1.0]
    lm = torch.rand(2, 68, 2) * 20 + 6
    mask = torch.ones(2, 68, dtype=torch.bool)
    pts = crop_to_heatmap(lm, 32, 8)
    from facelm.heatmap import boundary_heatmap

    perfect = {"heatmaps": [gaussian_heatmaps(pts, 8, s) for s in obj.sigmas(0.0)],
               "boundary": [boundary_heatmap(pts, scheme, 8, s) for s in obj.sigmas(0.0)], "residual": None}
    assert float(obj(perfect, lm, mask, 0.0)) == pytest.approx(0.0, abs=1e-10)
    # one wrong stack makes the loss positive
    perfect["heatmaps"][1] = perfect["heatmaps"][1] * 0.5
    assert float(obj(perfect, lm, mask, 0.0)) > 0


def test_cli_heatmap_flags_and_errors(data_dir, tmp_path):
    args = ["train", "--data", str(data_dir), "--out", str(tmp_path / "r"), "--arch", "smt", "--loss", "mse",
            "--stacks", "1", "--input-size", "32", "--width", "0.125", "--steps", "4", "--batch-size", "4",
            "--threads", "1", "--sigma", "2", "--sigma-schedule", "fixed", "-q"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["arch"] == "smt" and s["loss"] == "mse"
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["sigma"] == 2.0 and cfg["stacks"] == 1
    r = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "e"), "--arch", "cnn6",
                                 "--loss-map"])
    assert r.exit_code == 2 and "heatmap" in r.stderr
    r = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "e2"), "--arch",
                                 "hourglass", "--input-size", "30"])
    assert r.exit_code == 2 and "input_size" in r.stderr


def test_boundary_is_one_more_channel_of_the_same_loss_and_bice_starts_at_the_prior():
    from facelm.heatmap import boundary_heatmap
    from facelm.heatmap.losses import create_heatmap_loss
    from facelm.heatmap.objective import BICE_PRIOR

    scheme = get_scheme("300w68")
    model = create_model("hourglass", 68, stacks=1, input_size=32, width=0.125, boundary=True)
    obj = HeatmapObjective("mse", model, scheme, sigma=1.0, schedule="fixed")
    lm = torch.rand(2, 68, 2) * 20 + 6
    mask = torch.ones(2, 68, dtype=torch.bool)
    out = {"heatmaps": [torch.rand(2, 68, 8, 8)], "boundary": [torch.rand(2, 1, 8, 8)], "residual": None}
    pts = crop_to_heatmap(lm, 32, 8)
    t = torch.cat([gaussian_heatmaps(pts, 8, 1.0), boundary_heatmap(pts, scheme, 8, 1.0)], 1)
    p = torch.cat([out["heatmaps"][0], out["boundary"][0]], 1)
    # the mean over L + 1 channels (AWing's extra channel), not landmarks + an equally weighted boundary term
    assert float(obj(out, lm, mask, 0.0)) == pytest.approx(float(((p - t) ** 2).mean()), rel=1e-5)
    assert float(create_heatmap_loss("mse")(p, t)) == pytest.approx(float(obj(out, lm, mask, 0.0)), rel=1e-5)

    obj = HeatmapObjective("bice", model, scheme, sigma=1.0, schedule="fixed")
    obj.init_model(model)
    prob = torch.sigmoid(model.heads[0].bias)
    assert torch.allclose(prob, torch.full_like(prob, BICE_PRIOR), atol=1e-6)
    HeatmapObjective("awing", model, scheme, sigma=1.0, schedule="fixed").init_model(model)  # no-op for AWing
    assert torch.allclose(torch.sigmoid(model.heads[0].bias), prob)
