"""facelm.config: the training recipes, the learning-rate schedule and the --config file (moved from
test_train.py so that the tests mirror the package)."""

import pytest

from facelm.config import TrainConfig, resolve_train_config
from facelm.errors import UsageError
from facelm.train import lr_at


def test_recipes_fill_the_papers_settings():
    c = TrainConfig(data="d", out="o", recipe="paper", loss="wing").filled()
    assert (c.optimizer, c.batch_size, c.steps, c.lr, c.lr_end, c.weight_decay, c.momentum) == (
        "sgd", 8, 120_000, 3e-5, 3e-7, 5e-4, 0.9)
    assert TrainConfig(data="d", out="o", recipe="paper", loss="l2").filled().lr == 3e-6
    c7 = TrainConfig(data="d", out="o", recipe="paper", loss="l1", arch="cnn7").filled()
    assert (c7.lr, c7.lr_end) == (1e-5, 1e-7)
    assert TrainConfig(data="d", out="o", recipe="paper", loss="l2", arch="cnn7").filled().lr_end == 1e-8


def test_loglinear_schedule_endpoints_and_shape():
    c = TrainConfig(data="d", out="o", recipe="paper", steps=101).filled()
    assert lr_at(c, 0) == pytest.approx(3e-5)
    assert lr_at(c, 100) == pytest.approx(3e-7)
    assert lr_at(c, 50) == pytest.approx(3e-6)  # geometric midpoint
    f = TrainConfig(data="d", out="o", steps=1000, warmup=100).filled()
    assert lr_at(f, 0) == pytest.approx(f.lr / 100) and lr_at(f, 99) == pytest.approx(f.lr)
    assert lr_at(f, 999) == pytest.approx(f.lr_end)


def test_config_precedence_and_unknown_keys(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text('loss = "l1"\nsteps = 77\nbatch_size = 4\n')
    c = resolve_train_config({"data": "d", "out": "o", "steps": 99, "loss": None}, p)
    assert (c.loss, c.steps, c.batch_size) == ("l1", 99, 4)
    p.write_text("stpes = 3\n")
    with pytest.raises(UsageError, match="stpes"):
        resolve_train_config({"data": "d", "out": "o"}, p)
