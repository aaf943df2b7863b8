"""scripts/gpu_check.sh end to end on the CPU (``--device cpu``, tiny networks and step counts): the subset is
made by scripts/make_gpu_subset.py, unpacked, trained on with both augmentation paths, and one JSON comes out."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facelm.prepare import PrepareOptions, prepare
from facelm.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    csv, _ = make_dataset(tmp_path / "raw", n=24, seed=2)
    prepare(PrepareOptions(source=csv, out=tmp_path / "prep", fmt="csv", holdout=0.2, workers=1))
    carry = tmp_path / "carry"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "make_gpu_subset.py"), "--data",
                        str(tmp_path / "prep"), "--faces", "12", "--out", str(carry), "--no-wheels"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    sizes = json.loads(p.stdout)
    assert sizes["faces"] == 12 and sizes["total_mib"] < 64
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--carry", str(carry), "--device", "cpu",
                        "--batch-cnn6", "4", "--batch-cnn7", "4", "--steps-cnn6", "1", "--steps-cnn7", "1",
                        "--warmup-steps", "1", "--width", "0.25", "--threads", "1"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [x for x in p.stdout.splitlines() if x.strip()]
    assert len(lines) == 1  # stdout: one JSON, nothing else
    r = json.loads(lines[0])
    assert r["device"] == "cpu" and r["check"] == "scripts/gpu_check.sh"
    for arch in ("cnn6", "cnn7"):
        a = r[arch]
        assert a["bare_img_s"] > 0 and a["batch"] == 4
        for path in ("cpu", "device"):  # OpenCV is installed here, so both paths are measured
            assert a[f"pipeline_{path}"]["ratio"] > 0
            assert a[f"pipeline_{path}"]["setup"]["augment_on"] == path
    assert "12 faces" in p.stderr
