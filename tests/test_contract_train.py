"""``facelm train`` keeps the CLI contract (docs/cli.md) under bad options, bad data and signals.

Each test names the break it guards against: an option value that crashed or was silently replaced, an output
folder checked only after the work, a corrupt prepared set read with a traceback, a warm start from the shipped
model that did not run, a double Ctrl-C that lost the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import default_sigint
from typer.testing import CliRunner

from facelm.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
SMALL = ["--steps", "2", "--batch-size", "4", "--width", "0.125", "--threads", "1", "--val-every", "100", "-q"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(r, code: int) -> str:
    """Exit ``code``, nothing on stdout, and stderr exactly one ``error:`` line (no blank line before it)."""
    assert r.exit_code == code, (r.exit_code, r.stderr, repr(r.exception))
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), repr(r.stderr)
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A small prepared set and tiny checkpoints: cnn6 (width 0.125), cnn6 with 2 convs per block, cnn7."""
    from facelm.config import TrainConfig
    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset
    from facelm.train import train

    root = tmp_path_factory.mktemp("tiny")
    csv_file, _ = make_dataset(root / "raw", n=8, seed=0)
    prepare(PrepareOptions(source=csv_file, out=root / "prep", fmt="csv", workers=1, holdout=0.0))
    runs = {"cnn6": {}, "cnn6c2": {"convs": 2}, "cnn7": {"arch": "cnn7"}}
    for name, opts in runs.items():
        cfg = TrainConfig(data=str(root / "prep"), out=str(root / name), steps=1, batch_size=4, width=0.125,
                          threads=1, val_every=100, warmup=0, **opts).filled()
        train(cfg)
    return {"root": root, "prep": root / "prep", **{k: root / k / "best.pt" for k in runs}}


# -- option values: exit 2, one line naming the option, nothing written -----------------------------------------


@pytest.mark.parametrize(("args", "flag"), [
    (["--threads", "100000"], "--threads"),  # was a segfault (exit 139)
    (["--threads", "5000"], "--threads"),  # other commands cap at facelm.limits.MAX_THREADS
    (["--loader-threads", "100000"], "--loader-threads"),
    (["--seed", "-1"], "--seed"),  # was a ValueError traceback, leaving RUN/config.json behind
    (["--seed", "99999999999999999999999"], "--seed"),  # was an OverflowError traceback
    (["--width", "1000"], "--width"),  # was a torch allocation error
    (["--batch-size", "100000000"], "--batch-size"),  # was killed by the kernel
    (["--weight", "-1"], "--weight"),  # the message said --weights
    (["--val", ""], "--val"),  # empty strings were taken as "not given"
    (["--init", ""], "--init"),
    (["--stage1", ""], "--stage1"),
    (["--config", ""], "--config"),
    (["--arch", "hourglass", "--sigma", "1e308"], "--sigma"),  # was an overflow traceback, leaving config.json
    (["--arch", "hourglass", "--input-size", "4096"], "--input-size"),  # was killed by the kernel (24 GB)
    (["--arch", "hourglass", "--stacks", "300"], "--stacks"),  # grew past 6.8 GB
])
def test_invalid_option_values_are_usage_errors(tiny, tmp_path, args, flag):
    out = tmp_path / "run"
    line = one_error_line(invoke("train", "--data", tiny["prep"], *SMALL, "--out", out, *args), 2)
    assert flag in line and "--weights" not in line, line
    assert not out.exists()


def test_empty_out_is_refused_not_the_current_folder(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(invoke("train", "--data", tiny["prep"], *SMALL, "--out", ""), 2)
    assert "--out" in line
    assert list(tmp_path.iterdir()) == []


def test_corrected_seed_reruns_into_the_same_folder(tiny, tmp_path):
    out = tmp_path / "run"
    one_error_line(invoke("train", "--data", tiny["prep"], *SMALL, "--out", out, "--seed", "-1"), 2)
    r = invoke("train", "--data", tiny["prep"], *SMALL, "--out", out, "--seed", "1")
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("where", ["file", "below-file", "proc"])
def test_out_that_cannot_be_a_folder_is_refused_before_any_work(tmp_path, where):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = {"file": afile, "below-file": afile / "run", "proc": Path("/proc/facelm-run")}[where]
    if where == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc")
    # the data folder does not exist: the --out check comes first, before any data is read or model built
    line = one_error_line(invoke("train", "--data", tmp_path / "nothing", *SMALL, "--out", out), 2)
    assert "--out" in line, line
    assert afile.read_text() == "x"


# -- --config files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text", "says"), [
    ("c.json", "[1, 2]", "table"),
    ("c.json", '"steps"', "table"),
    ("c.yaml", "steps: 2\n", ".toml"),
    ("c.json", '{"steps": true}', "--steps"),
    ("c.json", '{"steps": "4"}', "--steps"),
    ("c.toml", 'steps = "4"\n', "--steps"),
    ("c.json", '{"val": ""}', "--val"),
    ("c.json", '{"weights": [-1]}', "--weight"),
])
def test_bad_config_files_are_one_line_naming_the_file(tiny, tmp_path, name, text, says):
    cfg = tmp_path / name
    cfg.write_text(text)
    out = tmp_path / "run"
    line = one_error_line(invoke("train", "--data", tiny["prep"], *SMALL[2:], "--out", out, "--config", cfg), 2)
    assert str(cfg) in line and says in line and "--weights" not in line, line
    assert not out.exists()


# -- bad prepared data: exit 3 naming the file -------------------------------------------------------------------


def test_corrupt_prepare_json_is_a_data_error(tiny, tmp_path):
    from facelm.errors import DataError
    from facelm.manifest import load_manifest

    d = tmp_path / "d"
    shutil.copytree(tiny["prep"], d)
    (d / "prepare.json").write_text("{")
    with pytest.raises(DataError, match="prepare.json"):
        load_manifest(d)
    line = one_error_line(invoke("train", "--data", d, *SMALL, "--out", tmp_path / "run"), 3)
    assert "prepare.json" in line
    assert not (tmp_path / "run").exists()


def test_crop_cache_shorter_than_the_manifest_is_a_data_error(tiny, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(tiny["prep"], d)
    crops = np.load(d / "crops.npy")
    np.save(d / "crops.npy", crops[:2])
    line = one_error_line(invoke("train", "--data", d, *SMALL, "--out", tmp_path / "run"), 3)
    assert "crops.npy" in line
    assert not (tmp_path / "run").exists()


# -- warm starts and stage 1 -------------------------------------------------------------------------------------


def test_init_takes_the_convs_of_its_network(tiny, tmp_path):
    """docs/training.md 'Warm start' (--init models/cnn6.onnx, a --convs 2 network) without --convs."""
    out = tmp_path / "ft"
    r = invoke("train", "--data", tiny["prep"], *SMALL, "--out", out, "--init", tiny["cnn6c2"])
    assert r.exit_code == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["convs"] == 2
    # given, a shallower --convs says which network the file holds
    line = one_error_line(invoke("train", "--data", tiny["prep"], *SMALL, "--out", tmp_path / "x",
                                 "--init", tiny["cnn6c2"], "--convs", "1"), 4)
    assert "--convs 2" in line, line


def test_init_mismatch_says_what_differs(tiny, tmp_path):
    args = ["train", "--data", tiny["prep"], *SMALL, "--out", tmp_path / "run"]
    line = one_error_line(invoke(*args, "--init", tiny["cnn6"], "--width", "0.25"), 4)
    assert "--width 0.125" in line, line


def test_init_of_another_landmark_count_says_so(tiny, tmp_path):
    from facelm.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(tiny["cnn6"])
    ck["meta"] = {**ck["meta"], "num_landmarks": 5}
    ck["model"] = {k: (v[:10] if v.shape[:1] == (136,) else v) for k, v in ck["model"].items()}  # 5 (x, y) out
    save_checkpoint(ck, tmp_path / "five.pt")
    line = one_error_line(invoke("train", "--data", tiny["prep"], *SMALL, "--out", tmp_path / "run",
                                 "--init", tmp_path / "five.pt"), 4)
    assert "5-point" in line and "68-point" in line, line


def test_stage1_refuses_a_stage2_model(tiny, tmp_path):
    line = one_error_line(invoke("train", "--data", tiny["prep"], *SMALL, "--arch", "cnn7", "--out",
                                 tmp_path / "run", "--stage1", tiny["cnn7"]), 4)
    assert "--stage1" in line and "stage-2" in line, line


# -- stderr and the summary --------------------------------------------------------------------------------------


def test_quiet_run_prints_nothing_on_stderr(tiny, tmp_path):
    r = invoke("train", "--data", tiny["prep"], *SMALL, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    assert json.loads(r.stdout)["steps"] == 2


def test_interrupted_before_validation_points_at_last_pt(tiny, tmp_path):
    from facelm.config import TrainConfig
    from facelm.train import train

    def stop(rec):
        if rec.get("step") == 1:
            raise KeyboardInterrupt

    cfg = TrainConfig(data=str(tiny["prep"]), out=str(tmp_path / "run"), steps=5, batch_size=4, width=0.125,
                      threads=1, val_every=100, log_every=1, warmup=0).filled()
    s = train(cfg, on_log=stop).summary
    assert s["interrupted"] and s["checkpoint"] == str(tmp_path / "run" / "last.pt")
    assert Path(s["checkpoint"]).is_file() and not (tmp_path / "run" / "best.pt").exists()


# -- signals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_while_saving_keeps_the_run(tiny, tmp_path, sig):
    """Ctrl-C, then another 10 ms later (while last.pt is written): exit 130 with last.pt and the summary."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "facelm", "train", "--data", str(tiny["prep"]), "--out", str(out),
           "--steps", "100000", "--batch-size", "4", "--width", "2", "--threads", "1", "--val-every", "100000",
           "--log-every", "1", "-q"]
    # SIGINT restored to its default in the child: run from a background job (`pytest &`, a CI script started with
    # `&`) it inherits SIGINT ignored, as shells set for background jobs, and would train on for 100,000 steps
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"},
                         preexec_fn=default_sigint)  # noqa: PLW1509 - one signal call before exec
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text().strip():
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.05)
        p.send_signal(sig)
        time.sleep(0.01)
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (p.returncode, stderr)
    assert (out / "last.pt").is_file(), stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and summary["last"] == str(out / "last.pt")
