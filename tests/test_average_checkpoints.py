"""scripts/average_checkpoints.py: the mean of several checkpoints' weights ("model soup") as a usable checkpoint."""

from __future__ import annotations

import torch

from conftest import load_script
from facelm.checkpoint import load_model_from_checkpoint, save_checkpoint
from facelm.models import create_model


def _ck(path, arch="cnn6r", width=0.25, seed=0, step=10):
    torch.manual_seed(seed)
    model = create_model(arch, 68, width=width)
    meta = {"arch": arch, "num_landmarks": 68, "width": width, "input_size": [64, 64],
            "scheme": {"name": "300w68"}}
    save_checkpoint({"format": "facelm-checkpoint", "format_version": 1, "arch": arch, "model": model.state_dict(),
                     "optimizer": {"state": {}}, "step": step, "meta": meta, "config": {"seed": seed}}, path)
    return model


def test_the_soup_is_the_mean_of_the_weights_and_loads_as_a_model(tmp_path):
    avg = load_script("average_checkpoints")
    a, b, c = (_ck(tmp_path / f"{n}.pt", seed=i, step=10 * i) for i, n in enumerate("abc"))
    assert avg.main([str(tmp_path / f"{n}.pt") for n in "abc"] + ["-o", str(tmp_path / "soup.pt")]) == 0
    model, meta = load_model_from_checkpoint(tmp_path / "soup.pt")
    assert meta["arch"] == "cnn6r"
    for k, v in model.state_dict().items():
        want = (a.state_dict()[k] + b.state_dict()[k] + c.state_dict()[k]) / 3
        torch.testing.assert_close(v, want)
    ck = torch.load(tmp_path / "soup.pt", weights_only=True)
    assert ck["optimizer"] is None and [s["step"] for s in ck["soup"]] == [0, 10, 20]
    x = torch.rand(2, 3, 64, 64) * 255
    assert model(x).shape == (2, 68, 2)


def test_checkpoints_of_another_network_are_refused(tmp_path, capsys):
    avg = load_script("average_checkpoints")
    _ck(tmp_path / "a.pt")
    _ck(tmp_path / "b.pt", width=0.5)
    assert avg.main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "-o", str(tmp_path / "s.pt")]) == 2
    assert "width 0.5 differs" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()
    assert avg.main([str(tmp_path / "a.pt"), "-o", str(tmp_path / "s.pt")]) == 2
    assert avg.main([str(tmp_path / "a.pt"), str(tmp_path / "nope.pt"), "-o", str(tmp_path / "s.pt")]) == 2
