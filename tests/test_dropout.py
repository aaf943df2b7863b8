"""Dropout on the FC layers of the CNN-6/7 regressors while training (``facelm train --dropout P``, not in the
paper): active in training mode only, validated, recorded, and it changes what a run learns."""

import json

import pytest
import torch
from typer.testing import CliRunner

from facelm.checkpoint import load_checkpoint
from facelm.cli import app
from facelm.config import TrainConfig
from facelm.errors import UsageError
from facelm.models import create_model
from facelm.train import train


def _net():
    torch.manual_seed(0)
    return create_model("cnn6", 68, width=0.25)


def test_eval_mode_ignores_it_and_training_mode_applies_it():
    net, x = _net(), torch.rand(3, 3, 64, 64) * 255
    net.eval()
    plain = net(x)
    net.dropout = 0.5
    assert torch.equal(net(x), plain)  # eval (and so every export): the same function
    net.train()
    a, b = net(x), net(x)
    assert not torch.allclose(a, b)  # a new mask per call
    net.dropout = 0.0
    assert torch.equal(net(x), net(x))  # training mode without dropout: deterministic


def test_option_is_validated(data_dir, tmp_path):
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError):
            TrainConfig(data=str(data_dir), out=str(tmp_path), dropout=bad)
    with pytest.raises(UsageError, match="dropout"):
        TrainConfig(data=str(data_dir), out=str(tmp_path), arch="hourglass", dropout=0.2).filled()
    r = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "x"), "--dropout", "1"])
    assert r.exit_code == 2 and "--dropout" in r.output and "probability" in r.output
    assert not (tmp_path / "x").exists()


def _run(data_dir, out, dropout):
    cfg = TrainConfig(data=str(data_dir), out=str(out), arch="cnn6", loss="wing", steps=4, batch_size=4,
                      width=0.25, warmup=1, lr=1e-3, val_every=4, log_every=2, threads=1, seed=0,
                      dropout=dropout).filled()
    train(cfg)
    return load_checkpoint(out / "last.pt")


def test_a_run_records_it_and_learns_differently_with_it(data_dir, tmp_path):
    off, on = _run(data_dir, tmp_path / "off", 0.0), _run(data_dir, tmp_path / "on", 0.5)
    assert on["config"]["dropout"] == 0.5 and off["config"]["dropout"] == 0.0
    assert json.loads((tmp_path / "on" / "config.json").read_text())["dropout"] == 0.5
    w_off, w_on = off["model"]["fc.weight"], on["model"]["fc.weight"]
    assert not torch.allclose(w_off, w_on)  # the same seed and data: only the dropout masks differ
    assert set(off["model"]) == set(on["model"])  # no extra weights: the exported model is the same network


def test_the_cli_help_names_it():
    r = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "--dropout" in r.output
