"""COFW (Burgos-Artizzu et al., ICCV 2013): ``COFW_train_color.mat`` / ``COFW_test_color.mat``.

Variables (train / test): ``IsTr`` / ``IsT`` (N x 1 cell of uint8 images, H x W or H x W x 3),
``phisTr`` / ``phisT`` (N x 87: 29 x, 29 y, 29 occlusion flags; **1-based** -> the reader subtracts 1) and
``bboxesTr`` / ``bboxesT`` (N x 4: x, y, w, h; 1-based -> box ``[x-1, y-1, x-1+w, y-1+h]``,
``box_source="cofw-bbox"``). Split: ``train`` for the ``Tr`` variables, ``test`` for the ``T`` ones (a file may
hold both). ``visible`` = occlusion flag == 0. Scheme ``cofw29``.

Both MATLAB v7.3 (HDF5, as the color files are distributed; read with h5py, arrays transposed back, cells
through object references) and v5 (``scipy.io.loadmat``) are read.

Embedded images: the images live inside the .mat, so the reader writes each one once as PNG into
``<mat folder>/<mat stem>_images/000001.png`` (1-based record number within its variable; test images of a file
holding both sets go to ``..._images/test_000001.png``). An existing PNG is reused and never rewritten (delete
the folder after replacing the .mat). Files are written atomically (temporary name, then rename). When the .mat's
folder is not writable, the cache goes to ``$XDG_CACHE_HOME/facelm/cofw/`` (default ``~/.cache``), in a folder
named after the .mat and a hash of its path. Colour images are stored as RGB PNG (as they are in the .mat).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, Reader, ReaderResult, register_reader
from facelm.datasets._common import SchemeResolver, issue, list_files
from facelm.datasets._mat import h5_array, h5_cell, is_v73, load_v5, mat_variables

__all__ = ["read_cofw_mat", "sniff_cofw_mat", "cofw_cache_dir", "COFW_MAT_READER"]

_SETS = (("Tr", "train"), ("T", "test"))


def _user_cache_dir(mat: Path) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    h = hashlib.sha1(str(mat).encode("utf-8")).hexdigest()[:10]
    return base / "facelm" / "cofw" / f"{mat.stem}_{h}_images"


def cofw_cache_dir(mat: str | Path) -> Path:
    """Where the images of a COFW .mat are (or will be) written: next to it when writable, else the user cache."""
    mat = Path(os.path.abspath(mat))
    local = mat.parent / f"{mat.stem}_images"
    if local.is_dir() and os.access(local, os.W_OK | os.X_OK):
        return local
    if not local.exists() and os.access(mat.parent, os.W_OK | os.X_OK):
        return local
    if local.is_dir():  # read-only but present: usable when already complete; the reader checks each file
        return local
    return _user_cache_dir(mat)


def _write_png(img: np.ndarray, dest: Path) -> str | None:
    """Encode ``img`` (H x W or H x W x 3 RGB uint8) as PNG at ``dest`` atomically; an error message or None."""
    import cv2

    a = np.asarray(img)
    if a.dtype != np.uint8:
        if a.dtype.kind == "f" and a.size and np.nanmax(a) <= 1.0:  # MATLAB im2double images
            a = np.clip(np.nan_to_num(a) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        elif a.dtype.kind in "iuf":
            a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
        else:
            return f"embedded image has dtype {a.dtype}"
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or min(a.shape[:2]) < 1:
        return f"embedded image has shape {a.shape}, expected H x W or H x W x 3"
    if a.ndim == 3:
        a = a[:, :, ::-1]  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a))
    if not ok:
        return "could not encode the embedded image as PNG"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(buf.tobytes())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        return f"cannot write {dest} ({e.strerror or e})"
    return None


class _Source:
    """Uniform access to one set (Tr or T) of a v5 or v7.3 file."""

    def __init__(self, mat: Path, suffix: str, v73: bool, h5file=None):
        self.mat, self.suffix, self.v73, self.f = mat, suffix, v73, h5file
        self._images = None
        if v73:
            self.phis = h5_array(h5file, f"phis{suffix}")
            self.bboxes = h5_array(h5file, f"bboxes{suffix}") if f"bboxes{suffix}" in h5file else None
        else:
            m = load_v5(mat, [f"phis{suffix}", f"bboxes{suffix}"])
            self.phis = np.asarray(m[f"phis{suffix}"])
            self.bboxes = np.asarray(m[f"bboxes{suffix}"]) if f"bboxes{suffix}" in m else None

    def image(self, i: int) -> np.ndarray:
        if self.v73:
            if self._images is None:
                self._images = h5_cell(self.f, f"Is{self.suffix}")
            return h5_array(self.f, self._images[i])
        if self._images is None:
            m = load_v5(self.mat, [f"Is{self.suffix}"])
            self._images = list(np.asarray(m[f"Is{self.suffix}"], dtype=object).reshape(-1, order="F"))
        return np.asarray(self._images[i])

    def num_images(self) -> int:
        if self.v73:
            return int(np.prod(self.f[f"Is{self.suffix}"].shape))
        v = mat_variables(self.mat).get(f"Is{self.suffix}", ())
        return int(np.prod(v)) if v else 0


def _mat_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [f for f in list_files(path, (".mat",)) if sniff_cofw_mat(f)]
        if files:
            return files
        raise ValueError(f"{path}: no COFW .mat file (variables phisTr/IsTr or phisT/IsT) in this folder")
    raise ValueError(f"{path}: no such file or folder")


def _embedded_png(src_set, i: int, dest: Path, cache: Path, mat: Path) -> tuple[Path, Path, str | None]:
    """(PNG path, cache folder, error or None): record ``i``'s embedded image written to ``dest`` once; when the
    cache folder beside the .mat file is read-only, into the user cache (which later records then use)."""
    if dest.is_file() and dest.stat().st_size > 0:
        return dest, cache, None
    try:
        img = src_set.image(i)
    except Exception as e:  # noqa: BLE001 - a damaged cell element must not stop the others
        return dest, cache, f"cannot read embedded image ({e})"
    err = _write_png(img, dest)
    if err and cache != _user_cache_dir(mat):  # read-only folder: retry in user cache
        cache = _user_cache_dir(mat)
        dest = cache / dest.name
        err = None if dest.is_file() else _write_png(img, dest)
    return dest, cache, err


def read_cofw_mat(path: Path, scheme: str | None = None) -> ReaderResult:
    """Read a COFW .mat file (or every one in a folder); see the module doc. Writes the embedded images once."""
    files = [Path(os.path.abspath(f)) for f in _mat_files(Path(path))]
    plan = []
    for mat in files:
        v = mat_variables(mat)
        sets = [(s, split) for s, split in _SETS if f"phis{s}" in v and f"Is{s}" in v]
        if not sets:
            raise ValueError(f"{mat}: not a COFW .mat file (needs phisTr and IsTr, or phisT and IsT)")
        plan.append((mat, sets))
    resolver = SchemeResolver(scheme, {29: "cofw29"})
    sname, why = resolver(29)
    if sname is None:
        raise ValueError(f"COFW has 29 points; {why}")

    def gen() -> ReaderResult:
        for mat, sets in plan:
            v73 = is_v73(mat)
            h5 = None
            if v73:
                import h5py

                h5 = h5py.File(mat, "r")
            try:
                cache = cofw_cache_dir(mat)
                for suffix, split in sets:
                    try:
                        src_set = _Source(mat, suffix, v73, h5)
                    except (KeyError, OSError, ValueError) as e:
                        raise ValueError(f"{mat}: cannot read phis{suffix}/bboxes{suffix} ({e})") from None
                    phis = np.asarray(src_set.phis, dtype=np.float64)
                    if phis.ndim != 2 or phis.shape[1] not in (58, 87):
                        raise ValueError(f"{mat}: phis{suffix} is {phis.shape}, expected N x 87 "
                                         "(29 x, 29 y, 29 occlusion flags)")
                    n = phis.shape[0]
                    n_img = src_set.num_images()
                    bb = src_set.bboxes
                    if bb is not None:
                        bb = np.asarray(bb, dtype=np.float64)
                        if bb.shape != (n, 4):
                            raise ValueError(f"{mat}: bboxes{suffix} is {bb.shape}, expected {n} x 4")
                    prefix = "test_" if len(sets) > 1 and split == "test" else ""
                    for i in range(n):
                        src = f"{mat}:{'Is' + suffix}[{i + 1}]"
                        where = f"{mat.name}: phis{suffix} record {i + 1}"
                        row = phis[i]
                        if not np.all(np.isfinite(row)):
                            yield issue(src, f"{where}: NaN or infinite values")
                            continue
                        if i >= n_img:
                            yield issue(src, f"{where}: no embedded image (Is{suffix} has {n_img})")
                            continue
                        dest = cache / f"{prefix}{i + 1:06d}.png"
                        dest, cache, err = _embedded_png(src_set, i, dest, cache, mat)
                        if err:
                            yield issue(src, f"{where}: {err}")
                            continue
                        lm = np.stack([row[:29], row[29:58]], axis=1) - 1.0
                        vis = (row[58:87] == 0) if phis.shape[1] == 87 else None
                        box = None
                        if bb is not None and bb[i, 2] > 0 and bb[i, 3] > 0 and np.all(np.isfinite(bb[i])):
                            x, y, w, h = bb[i]
                            box = np.array([x - 1, y - 1, x - 1 + w, y - 1 + h], dtype=np.float64)
                        yield RawFace(image=dest, landmarks=lm, scheme=sname, box=box,
                                      box_source="cofw-bbox" if box is not None else "", visible=vis,
                                      split=split, subset=[], source=src, attrs={"record": i + 1})
            finally:
                if h5 is not None:
                    h5.close()

    return gen()


def sniff_cofw_mat(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(sniff_cofw_mat(f) for f in list_files(path, (".mat",)))
    if path.suffix.lower() != ".mat":
        return False
    v = mat_variables(path)
    return any(f"phis{s}" in v and f"Is{s}" in v for s, _ in _SETS)


COFW_MAT_READER = register_reader(Reader(
    name="cofw-mat",
    description="COFW .mat (v7.3 or v5; 29 points, 1-based; embedded images written once as PNG)",
    read=read_cofw_mat,
    sniff=sniff_cofw_mat,
    default_scheme="cofw29",
))
