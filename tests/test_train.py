import json
import math
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from facelm.checkpoint import load_checkpoint
from facelm.cli import app
from facelm.config import TrainConfig
from facelm.errors import DataError, ModelError, UsageError
from facelm.prepare import PrepareOptions, prepare
from facelm.train import DivergedError, train


def _cfg(data_dir, out, **kw):
    base = dict(data=str(data_dir), out=str(out), arch="cnn6", loss="wing", steps=30, batch_size=8, width=0.25,
                warmup=5, lr=2e-3, val_every=10, log_every=5, threads=1, seed=3)
    base.update(kw)
    return TrainConfig(**base).filled()


def test_train_reduces_loss_and_writes_a_self_describing_checkpoint(data_dir, tmp_path):
    res = train(_cfg(data_dir, tmp_path / "run", steps=40))
    losses = [r["loss"] for r in res.history if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    s = res.summary
    assert s["steps"] == 40 and s["val_faces"] > 0 and math.isfinite(s["final_val_nme"])
    ck = torch.load(tmp_path / "run" / "best.pt", map_location="cpu", weights_only=True)
    meta = ck["meta"]
    for key in ("arch", "scheme", "input_size", "crop", "pixel_norm", "mean_shape", "loss", "manifest_sha256",
                "facelm_version", "torch_version"):
        assert key in meta
    assert meta["scheme"]["name"] == "300w68" and meta["input_size"] == [64, 64]
    assert meta["loss"]["name"] == "wing" and meta["loss"]["w"] == 10
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_nme" in x for x in lines)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 40


def test_interrupt_then_resume_is_bit_for_bit(data_dir, tmp_path):
    full = train(_cfg(data_dir, tmp_path / "a", steps=20))
    assert not full.interrupted

    def stop_at_10(rec):
        if rec.get("step") == 10 and "loss" in rec:
            raise KeyboardInterrupt

    part = train(_cfg(data_dir, tmp_path / "b", steps=20), on_log=stop_at_10)
    assert part.interrupted
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 10
    resumed = train(_cfg(data_dir, tmp_path / "b", steps=20), resume=True)
    assert resumed.summary["steps"] == 20
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_refuses_other_settings_and_corrupt_checkpoints(data_dir, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data_dir, out, steps=10))
    with pytest.raises(UsageError, match="different settings"):
        train(_cfg(data_dir, out, steps=10, loss="l1"), resume=True)
    with pytest.raises(UsageError, match="different run"):
        train(_cfg(data_dir, out, steps=10, loss="l1"))
    (out / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="last.pt"):
        train(_cfg(data_dir, out, steps=10), resume=True)
    with pytest.raises(UsageError, match="nothing to resume"):
        train(_cfg(data_dir, tmp_path / "empty", steps=10), resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    import facelm.train as T

    real = T.create_loss
    calls = {"n": 0}

    def poisoned(*a, **k):
        loss = real(*a, **k)
        orig = loss.forward

        def fwd(pred, target, mask=None):
            calls["n"] += 1
            out = orig(pred, target, mask)
            return out * float("nan") if calls["n"] > 12 else out

        loss.forward = fwd
        return loss

    monkeypatch.setattr(T, "create_loss", poisoned)
    with pytest.raises(DivergedError, match="step 12"):
        train(_cfg(data_dir, tmp_path / "run", steps=30))
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["step"] == 10
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_a_usage_error(data_dir, tmp_path):
    with pytest.raises(UsageError, match="CUDA"):
        train(_cfg(data_dir, tmp_path / "run", device="cuda"))


def test_empty_train_split_and_scheme_mismatch(data_dir, tmp_path):
    from facelm.manifest import load_manifest, write_manifest

    m = load_manifest(data_dir)
    only_val = tmp_path / "valonly"
    only_val.mkdir()
    write_manifest(only_val / "manifest.jsonl", [s.model_copy(update={"split": "val"}) for s in m.samples])
    with pytest.raises(DataError, match="train"):
        train(_cfg(only_val, tmp_path / "run"))
    other = tmp_path / "other"
    other.mkdir()
    write_manifest(other / "manifest.jsonl", [s.model_copy(update={"scheme": "wflw98"}) for s in m.samples])
    with pytest.raises(DataError, match="scheme"):
        train(_cfg(data_dir, tmp_path / "run2", val=str(other)))


def test_stage2_trains_on_stage1_crops(data_dir, tmp_path):
    train(_cfg(data_dir, tmp_path / "s1", steps=10))
    res = train(_cfg(data_dir, tmp_path / "s2", arch="cnn7", steps=6, stage1=str(tmp_path / "s1" / "best.pt"),
                     val_every=6))
    meta = load_checkpoint(tmp_path / "s2" / "best.pt")["meta"]
    assert meta["stage"] == 2 and meta["input_size"] == [128, 128] and meta["loss"]["w"] == 15
    assert meta["crop"]["stage1"].endswith("best.pt")
    assert math.isfinite(res.summary["final_val_nme"])
    with pytest.raises(UsageError, match="cnn7"):
        train(_cfg(data_dir, tmp_path / "s3", stage1=str(tmp_path / "s1" / "best.pt")))


def test_stage2_can_be_framed_by_an_exported_onnx_stage1(data_dir, tmp_path):
    """`--stage1 models/cnn6.onnx`: the ONNX file rebuilds the same network, so stage 2 sees the same crops."""
    import numpy as np

    from facelm.checkpoint import load_model_from_checkpoint
    from facelm.export import export_onnx

    train(_cfg(data_dir, tmp_path / "s1", steps=10))
    export_onnx(tmp_path / "s1" / "best.pt", tmp_path / "s1.onnx")
    pt, _ = load_model_from_checkpoint(tmp_path / "s1" / "best.pt")
    ox, meta = load_model_from_checkpoint(tmp_path / "s1.onnx")
    assert meta["arch"] == "cnn6" and meta["scheme"]["name"] == "300w68"
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (3, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(pt(x), ox(x), atol=1e-4)
    kw = dict(arch="cnn6r", steps=4, val_every=4)
    a = train(_cfg(data_dir, tmp_path / "a", stage1=str(tmp_path / "s1" / "best.pt"), **kw)).summary
    b = train(_cfg(data_dir, tmp_path / "b", stage1=str(tmp_path / "s1.onnx"), **kw)).summary
    assert b["final_val_nme"] == pytest.approx(a["final_val_nme"], rel=1e-3)
    with pytest.raises(ModelError, match="not found"):
        train(_cfg(data_dir, tmp_path / "c", stage1=str(tmp_path / "missing.onnx"), **kw))


def test_cli_train_prints_one_json_summary(data_dir, tmp_path):
    r = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--steps", "6",
                                 "--batch-size", "8", "--width", "0.25", "--threads", "1", "--val-every", "6"])
    assert r.exit_code == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    assert len(lines) == 1
    s = json.loads(lines[0])
    assert s["steps"] == 6 and s["arch"] == "cnn6"
    r2 = CliRunner().invoke(app, ["train", "--data", str(data_dir), "--out", str(tmp_path / "run2"), "--loss",
                                  "wingg"])
    assert r2.exit_code == 2 and "loss" in r2.stderr


def _free_port() -> int:
    """A free TCP port: other test runs on this machine may hold a fixed one."""
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def test_ddp_two_cpu_processes_gloo_equal_one_process_with_the_global_batch(data_dir, tmp_path):
    """torchrun with 2 gloo processes, each taking half of every batch of 8, ends where one process with batch 8
    ends (the same faces and augmentation draws; only the order of the gradient sums differs)."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # fp32: on a CPU with native bf16, `auto` trains in bf16, whose rounding differs with the order of the sums
    opts = ["--data", str(data_dir), "--steps", "6", "--batch-size", "8", "--width", "0.25", "--threads", "1",
            "--val-every", "6", "--log-every", "3", "--seed", "3", "--precision", "fp32", "-q"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "facelm", "train", "--out", str(out), *opts]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    s = json.loads([x for x in p.stdout.splitlines() if x.startswith("{")][-1])
    assert s["steps"] == 6 and s["setup"]["world"] == 2
    ck = load_checkpoint(out / "last.pt")
    assert ck["step"] == 6
    assert not any(k.startswith("module.") for k in ck["model"])
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "one"), *opts])
    assert r.exit_code == 0, r.stderr
    one = load_checkpoint(tmp_path / "one" / "last.pt")["model"]
    for k, v in ck["model"].items():
        torch.testing.assert_close(v, one[k], rtol=1e-4, atol=1e-5, msg=k)
    logs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    logs1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert logs[-1]["val_nme"] == pytest.approx(logs1[-1]["val_nme"], rel=1e-4)


def test_custom_scheme_travels_with_the_prepared_data(tmp_path):
    """A scheme defined in a user file at prepare time is usable by train in a process that never saw the file."""
    import json as _json

    from facelm import schemes as S
    from facelm.synthetic import make_dataset

    csv, _ = make_dataset(tmp_path / "raw", n=16, seed=4)
    d = S.get_scheme("300w68").to_dict()
    d.update(name="my68", description="user scheme")
    sfile = tmp_path / "my68.json"
    sfile.write_text(_json.dumps({"name": "my68", "num_landmarks": 68, "flip_pairs": d["flip_pairs"],
                                  "normalisers": d["normalisers"]}))
    prepare(PrepareOptions(source=csv, out=tmp_path / "prep", fmt="csv", scheme=str(sfile), holdout=0.25,
                           workers=1))
    S._REGISTRY.pop("my68", None)  # as in a fresh process
    res = train(_cfg(tmp_path / "prep", tmp_path / "run", steps=4, val_every=4))
    assert res.summary["scheme"] == "my68"
    assert load_checkpoint(tmp_path / "run" / "last.pt")["meta"]["scheme"]["name"] == "my68"
