from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACELM_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    """Path under ../shared/data; skips the test cleanly when the folder is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p


@pytest.fixture
def shared_data():
    return shared


@pytest.fixture
def no_aflw19_map(monkeypatch):
    """The built-in maps without ``300w68 -> aflw19``, for the tests of what happens when a map is missing (every
    built-in scheme has a map from 300w68); the registry is restored after the test."""
    from facelm import scheme_maps

    kept = {k: v for k, v in scheme_maps._MAPS.items() if k != ("300w68", "aflw19")}
    monkeypatch.setattr(scheme_maps, "_MAPS", kept)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A small prepared synthetic dataset (32 faces, a quarter of the identities in 'val'), one per test module;
    the training tests share it (a module may define its own ``data_dir``)."""
    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset

    root = tmp_path_factory.mktemp("synth")
    csv, _ = make_dataset(root / "raw", n=32, seed=1)
    prepare(PrepareOptions(source=csv, out=root / "prep", fmt="csv", holdout=0.25, workers=1))
    return root / "prep"


def write_video(path: Path, frames, fps: float = 10.0) -> Path:
    """An MJPG video of RGB ``frames`` (all one size) at ``path``."""
    import cv2

    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert wr.isOpened()
    for f in frames:
        wr.write(f[:, :, ::-1])
    wr.release()
    return path


def graded_video(path: Path, n: int = 10, size: tuple[int, int] = (64, 48)) -> Path:
    """``n`` grey frames of ``size`` (w, h), frame i at level 20 i, at 10 fps: a clip whose frames tell apart."""
    import numpy as np

    return write_video(path, [np.full((size[1], size[0], 3), 20 * i, np.uint8) for i in range(n)])


def load_script(name: str):
    """``scripts/NAME.py`` loaded as a module (the tests use the measurement scripts' own helpers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def default_sigint() -> None:
    """``preexec_fn`` for a child that tests send SIGINT to: SIGINT back to its default, which a background job
    (`pytest &`, a CI script started with `&`) inherits ignored, as shells set for background jobs."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def make_tiny_models(root: Path) -> dict:
    """Tiny random-weight models (1-step CNN-6 and CNN-7, width 0.125) of an 8-face synthetic set, exported to
    ``root/models``: the cheapest real models for CLI tests. Returns the folders and files made."""
    from facelm.config import TrainConfig
    from facelm.export import export_onnx
    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset
    from facelm.train import train

    csv_file, _ = make_dataset(root / "raw", n=8, seed=0)
    prepare(PrepareOptions(source=csv_file, out=root / "prep", fmt="csv", workers=1, holdout=0.0))
    for arch in ("cnn6", "cnn7"):
        cfg = TrainConfig(data=str(root / "prep"), out=str(root / arch), arch=arch, steps=1, batch_size=4,
                          width=0.125, threads=1, val_every=100, warmup=0).filled()
        train(cfg)
        export_onnx(root / arch / "best.pt", root / "models" / f"{arch}.onnx")
    return {"root": root, "models": root / "models", "prep": root / "prep", "raw": root / "raw",
            "ckpt": root / "cnn6" / "best.pt"}
