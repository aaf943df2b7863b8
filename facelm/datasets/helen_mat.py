"""HELEN re-labelled with the 29-point LFPW/COFW scheme (Zhou, Brandt, Lin, ICCV 2013; GitHub ``zhfe99/helen``).

``data/helen.mat`` (MATLAB v5): ``imgs`` (1 x N cell of image file names) and ``Pts`` (1 x N cell, each a
**2 x 29** array: row 0 = x, row 1 = y; numeric class varies per cell: double, uint8 or uint16). Coordinates are
**1-based** (MATLAB; checked against the pupils of the images), so the reader subtracts 1. Images are looked up
in ``img/`` beside the .mat (the upstream layout ``data/img/``), then beside it, then in ``images/``. Scheme
``cofw29``; no box, no split. A folder is searched for a .mat with ``imgs`` and ``Pts`` directly and in its
``data/`` subfolder. A MATLAB v7.3 file with the same variables is read too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, Reader, ReaderResult, register_reader
from facelm.datasets._common import ImageResolver, SchemeResolver, issue, list_files
from facelm.datasets._mat import h5_array, h5_cell, h5_string, is_v73, load_v5, mat_variables, v5_cell, v5_str

__all__ = ["read_helen_mat", "sniff_helen_mat", "HELEN_MAT_READER"]


def _load(mat: Path) -> tuple[list[str | None], list[np.ndarray]]:
    if is_v73(mat):
        import h5py

        try:
            with h5py.File(mat, "r") as f:
                if "imgs" not in f or "Pts" not in f:
                    raise ValueError(f"{mat}: not a HELEN-29 .mat (needs variables imgs and Pts)")
                names = [h5_string(ds) for ds in h5_cell(f, "imgs")]
                pts = [h5_array(f, ds) for ds in h5_cell(f, "Pts")]
                return names, pts
        except OSError as e:
            raise ValueError(f"{mat}: cannot read MATLAB v7.3 file ({e})") from None
    m = load_v5(mat, ["imgs", "Pts"])
    if "imgs" not in m or "Pts" not in m:
        raise ValueError(f"{mat}: not a HELEN-29 .mat (needs variables imgs and Pts)")
    return [v5_str(x) for x in v5_cell(m["imgs"])], [np.asarray(p) for p in v5_cell(m["Pts"])]


def _candidates(folder: Path) -> list[Path]:
    return list_files(folder, (".mat",)) + (list_files(folder / "data", (".mat",)) if (folder / "data").is_dir()
                                            else [])


def _mat_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for f in _candidates(path):
            if sniff_helen_mat(f):
                return f
        raise ValueError(f"{path}: no HELEN-29 .mat (variables imgs and Pts) here or in data/")
    raise ValueError(f"{path}: no such file or folder")


def read_helen_mat(path: Path, scheme: str | None = None) -> ReaderResult:
    """Read ``helen.mat`` (or the one in a folder or its ``data/``); see the module doc."""
    mat = Path(os.path.abspath(_mat_file(Path(path))))
    names, pts = _load(mat)
    if len(names) != len(pts):
        raise ValueError(f"{mat}: imgs has {len(names)} entries but Pts has {len(pts)}")
    resolver = SchemeResolver(scheme, {29: "cofw29"})
    images = ImageResolver([mat.parent], ("img", "", "images"))

    def gen() -> ReaderResult:
        for i, (name, p) in enumerate(zip(names, pts)):
            src = f"{mat}:{i + 1}"
            where = f"{mat.name}: record {i + 1} ({name})"
            a = np.asarray(p)
            if a.dtype == object or a.ndim != 2 or 2 not in a.shape:
                yield issue(src, f"{where}: Pts is {a.shape}, expected 2 x N")
                continue
            a = a.astype(np.float64)
            lm = (a.T if a.shape[0] == 2 else a) - 1.0
            if not np.all(np.isfinite(lm)):
                yield issue(src, f"{where}: NaN or infinite landmark coordinates")
                continue
            sname, why = resolver(len(lm))
            if sname is None:
                yield issue(src, f"{where}: {why}")
                continue
            img = images.resolve(name) if name else None
            if img is None:
                yield issue(src, f"{where}: image not found (looked under {images.where()})")
                continue
            yield RawFace(image=Path(os.path.abspath(img)), landmarks=lm, scheme=sname, source=src,
                          attrs={"record": i + 1})

    return gen()


def sniff_helen_mat(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(sniff_helen_mat(f) for f in _candidates(path))
    if path.suffix.lower() != ".mat":
        return False
    v = mat_variables(path)
    return "imgs" in v and "Pts" in v


HELEN_MAT_READER = register_reader(Reader(
    name="helen-mat",
    description="HELEN-29 helen.mat (imgs + Pts cells of 2 x 29, 1-based; Zhou et al. 2013)",
    read=read_helen_mat,
    sniff=sniff_helen_mat,
    default_scheme="cofw29",
))
