"""The wheel carries the default models and the face detector: an installed facelm finds them as a source checkout
finds models/, and `facelm predict` works on a machine that has nothing but facelm (no ../shared, no network)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DETECTOR = ("yunet_s_dynamic.onnx", "LICENSE", "NOTICE")
YUNET_SHA256 = "daede24002cc8590f457998cc5e6c9e8b82f45f6bd969506a8913cd4ed10a2d3"

# Imported first by every Python started with this folder on PYTHONPATH: no socket may reach another machine.
NO_NETWORK = '''
import socket

def _refuse(*args, **kwargs):
    raise OSError("network disabled by facelm's offline test")

socket.getaddrinfo = _refuse
socket.create_connection = _refuse
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex

def _local_only(orig):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse()
        return orig(self, address)
    return connect

socket.socket.connect = _local_only(_connect)
socket.socket.connect_ex = _local_only(_connect_ex)
'''


def _offline_env(tmp_path: Path, pythonpath: list[Path]) -> dict[str, str]:
    """A bare environment: no FACELM_* variables, an empty home and cache, an unroutable proxy and no sockets."""
    nonet = tmp_path / "nonet"
    nonet.mkdir(exist_ok=True)
    (nonet / "sitecustomize.py").write_text(NO_NETWORK)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    proxy = "http://10.255.255.1:9"  # unroutable
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
            "PYTHONPATH": os.pathsep.join(str(p) for p in [nonet, *pythonpath]), "COLUMNS": "200",
            "http_proxy": proxy, "https_proxy": proxy, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "ALL_PROXY": proxy}


def _assert_offline(env: dict[str, str], cwd: Path) -> None:
    code = "import urllib.request; urllib.request.urlopen('https://raw.githubusercontent.com/', timeout=5)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                       timeout=60, check=False)
    assert r.returncode != 0 and "network disabled" in r.stderr, f"the network is not hidden: {r.stderr[-500:]}"


def _assert_predicts_examples(cmd: list[str], env: dict[str, str], cwd: Path, detector: Path) -> None:
    shutil.copytree(REPO / "examples", cwd / "examples")
    r = subprocess.run([*cmd, "predict", "examples/", "--device", "cpu"], capture_output=True, text=True,
                       cwd=cwd, env=env, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(Path(rec["image"]).name for rec in recs) == ["astronaut.jpg", "camera.jpg"]
    for rec in recs:
        assert rec["error"] is None and len(rec["faces"]) >= 1, rec
        for face in rec["faces"]:
            assert len(face["landmarks"]) == 68 and face["score"] > 0.5
    assert f"detector: yunet ({detector}," in r.stderr, r.stderr
    assert "downloading" not in r.stderr and "shared" not in r.stderr
    assert not (Path(env["XDG_CACHE_HOME"]) / "facelm").exists()  # nothing was fetched


def test_wheel_ships_models_as_package_data_and_installed_facelm_finds_them(tmp_path):
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(dist)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = dist.glob("facelm-*.whl")
    zf = zipfile.ZipFile(wheel)
    names = set(zf.namelist())
    shipped = sorted(p.name for p in (REPO / "models").iterdir() if p.suffix in (".onnx", ".md"))
    assert "README.md" in shipped and {"cnn6.onnx", "cnn6r.onnx"} <= set(shipped)
    for name in shipped:
        assert f"facelm/_models/{name}" in names
    for name in DETECTOR:  # the detector, byte for byte, with its licence and notice
        data = zf.read(f"facelm/_models/detectors/{name}")
        assert data == (REPO / "models" / "detectors" / name).read_bytes()
    assert hashlib.sha256(zf.read("facelm/_models/detectors/yunet_s_dynamic.onnx")).hexdigest() == YUNET_SHA256
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

    # `facelm predict examples/` from the installed wheel alone: an empty folder as the working directory (no
    # ../shared anywhere near the package), no network, no cache, no FACELM_* settings
    work = tmp_path / "empty"
    work.mkdir()
    env = _offline_env(tmp_path, [site])
    _assert_offline(env, work)
    _assert_predicts_examples([str(site / "bin" / "facelm")], env, work,
                              site / "facelm" / "_models" / "detectors" / "yunet_s_dynamic.onnx")


def _tracked_files() -> list[str]:
    r = subprocess.run(["git", "ls-files", "-z"], capture_output=True, cwd=REPO, check=False)
    if r.returncode == 0 and r.stdout:
        return [f for f in r.stdout.decode().split("\0") if f]
    # not a git checkout (an unpacked source archive): the files the README's command reads
    return [str(p.relative_to(REPO)) for d in ("facelm", "models", "examples") for p in (REPO / d).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts] + ["pyproject.toml", "setup.py"]


def test_readme_main_command_works_in_a_fresh_clone_without_shared(tmp_path):
    """The checkout's own files (what `git clone` gives), in a folder with no ../shared beside it, offline."""
    clone = tmp_path / "clone"
    for rel in _tracked_files():
        if rel.startswith(("tests/", "docs/", "benchmarks/", "examples/")):
            continue
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, clone / rel)
    assert not (tmp_path / "shared").exists()
    work = clone  # the README runs `facelm predict examples/ --draw out/` in the checkout
    env = _offline_env(tmp_path, [clone])
    _assert_offline(env, work)
    _assert_predicts_examples([sys.executable, "-m", "facelm"], env, work,
                              clone / "models" / "detectors" / "yunet_s_dynamic.onnx")


def test_a_stale_build_folder_does_not_put_deleted_models_into_the_wheel(tmp_path):
    """setup.py's build_py starts the package data from an empty folder: a model deleted from models/ since an earlier
    build (left in build/lib) must not ship beside its replacement (predict would refuse two stage-2 models)."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    src = tmp_path / "src"
    for f in files:
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    stale = src / "build" / "lib" / "facelm" / "_models" / "cnn7.onnx"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an old stage-2 model")
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q",
                        "-w", str(dist)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = dist.glob("facelm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "facelm/_models/cnn6.onnx" in names and "facelm/_models/cnn7.onnx" not in names
