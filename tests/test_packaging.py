"""The wheel carries the default models: an installed facelm finds them as a source checkout finds models/."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_models_as_package_data_and_installed_facelm_finds_them(tmp_path):
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(dist)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = dist.glob("facelm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (REPO / "models").iterdir() if p.suffix in (".onnx", ".md"))
    assert "README.md" in shipped and {"cnn6.onnx", "cnn7.onnx"} <= set(shipped)
    for name in shipped:
        assert f"facelm/_models/{name}" in names
    assert not any(n.startswith(("tests/", "work/", "models/")) for n in names)

    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                        str(wheel)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    code = "from facelm.runtime.session import default_models_dir as d; print(d())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]
    found = Path(r.stdout.strip())
    assert found == site / "facelm" / "_models"
    assert (found / "cnn6.onnx").read_bytes() == (REPO / "models" / "cnn6.onnx").read_bytes()
