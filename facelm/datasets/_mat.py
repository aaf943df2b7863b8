"""MATLAB ``.mat`` helpers for the readers: v5 (``scipy.io``) and v7.3 (HDF5, ``h5py``).

h5py sees MATLAB arrays transposed (MATLAB is column-major): a MATLAB ``N x 87`` matrix is an HDF5 dataset of
shape ``(87, N)`` and an ``H x W x 3`` image is ``(3, W, H)``. :func:`h5_array` undoes that. Cell arrays are
datasets of object references, each pointing to a dataset under ``#refs#``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["is_v73", "mat_variables", "load_v5", "h5_array", "h5_cell", "h5_string", "v5_str", "v5_cell"]


def is_v73(path: Path) -> bool:
    """True for an HDF5-based (v7.3) MAT-file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(520)
    except OSError:
        return False
    # MATLAB writes a 512-byte text header, then the HDF5 superblock at offset 512; plain HDF5 starts at 0.
    return head[512:520] == b"\x89HDF\r\n\x1a\n" or head[:8] == b"\x89HDF\r\n\x1a\n"


def mat_variables(path: Path) -> dict[str, tuple[int, ...]]:
    """Variable name -> MATLAB shape, without loading the data. ``{}`` when the file is not a readable MAT-file."""
    path = Path(path)
    if not path.is_file():
        return {}
    if is_v73(path):
        try:
            import h5py

            with h5py.File(path, "r") as f:
                return {k: tuple(reversed(f[k].shape)) for k in f.keys()
                        if not k.startswith("#") and isinstance(f[k], h5py.Dataset)}
        except Exception:
            return {}
    try:
        import scipy.io

        return {name: tuple(shape) for name, shape, _cls in scipy.io.whosmat(str(path))}
    except Exception:
        return {}


def load_v5(path: Path, names: list[str]) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path), variable_names=names)
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... for damaged files
        raise ValueError(f"{path}: cannot read MATLAB file ({e})") from None


def h5_array(f, key_or_ds) -> np.ndarray:
    """A numeric variable as MATLAB shows it (transposed back)."""
    ds = f[key_or_ds] if isinstance(key_or_ds, (str, bytes)) else key_or_ds
    return np.asarray(ds[()]).T


def h5_cell(f, key: str) -> list:
    """A cell array's elements (HDF5 datasets), in MATLAB's linear (column-major) order."""
    refs = np.asarray(f[key][()])
    # HDF5 holds the MATLAB dims reversed, so its C order is MATLAB's column-major linear order.
    return [f[r] for r in refs.reshape(-1)]


def h5_string(ds) -> str:
    """A MATLAB char array stored in HDF5 (uint16 codes) as str."""
    codes = np.asarray(ds[()]).reshape(-1)
    return "".join(chr(int(c)) for c in codes)


def v5_str(obj) -> str | None:
    """A string from a scipy.io.loadmat cell element (``array(['3/image.jpg'])`` and the like), else None."""
    while isinstance(obj, np.ndarray):
        if obj.size == 0:
            return ""
        if obj.dtype.kind in "US":
            return "".join(s.decode("utf-8", "replace") if isinstance(s, bytes) else str(s)
                           for s in obj.reshape(-1))
        obj = obj.reshape(-1)[0]
    if isinstance(obj, (str, np.str_)):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    return None


def v5_cell(obj) -> list:
    """The elements of a loadmat cell array (object ndarray) in MATLAB's column-major linear order."""
    arr = np.asarray(obj)
    if arr.dtype != object:
        return [arr]
    return list(arr.reshape(-1, order="F"))
