"""Helpers shared by the dataset readers (not part of the public reader interface).

Everything here is cheap: readers never open images, they only check that the files exist.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from facelm.datasets._base import ReadIssue
from facelm.schemes import get_scheme

__all__ = [
    "IMAGE_SUFFIXES", "DEFAULT_SCHEME_BY_COUNT", "SchemeResolver", "ImageResolver", "FolderImages",
    "parse_float", "square_box", "has_image_suffix", "issue", "list_files", "any_file", "head_text", "ancestors",
]

try:  # one list of image suffixes for the whole package
    from facelm.imageio import IMAGE_SUFFIXES
except Exception:  # pragma: no cover - imageio needs OpenCV; readers do not
    IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")

_SUFFIXES = frozenset(s.lower() for s in IMAGE_SUFFIXES)

#: Built-in scheme implied by a point count (formats that can hold any scheme).
DEFAULT_SCHEME_BY_COUNT: dict[int, str] = {68: "300w68", 29: "cofw29", 19: "aflw19", 98: "wflw98", 5: "5pt"}


def has_image_suffix(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in _SUFFIXES


def issue(source: str | Path, message: str) -> ReadIssue:
    """A ReadIssue with a one-line message."""
    return ReadIssue(str(source), " ".join(str(message).split()))


def parse_float(tok: str) -> float | None:
    """``float(tok)`` or None when it is not a finite number."""
    try:
        v = float(tok)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def square_box(cx: float, cy: float, side: float) -> np.ndarray:
    h = side / 2.0
    return np.array([cx - h, cy - h, cx + h, cy + h], dtype=np.float64)


def _walk(folder: Path):
    """``os.walk`` in sorted order, skipping hidden folders, following symlinked folders once (no cycles)."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield dirpath, dirnames, filenames


def list_files(folder: Path, suffixes: Sequence[str], recursive: bool = False) -> list[Path]:
    """Files under ``folder`` whose name ends with one of ``suffixes`` (case-insensitive), sorted."""
    suf = tuple(s.lower() for s in suffixes)
    out: list[str] = []
    if recursive:
        for dirpath, dirnames, filenames in _walk(folder):
            out.extend(os.path.join(dirpath, f) for f in filenames
                       if f.lower().endswith(suf) and not f.startswith("."))
    else:
        try:
            with os.scandir(folder) as it:
                out = [e.path for e in it
                       if e.name.lower().endswith(suf) and not e.name.startswith(".") and e.is_file()]
        except OSError:
            return []
    return [Path(p) for p in sorted(out)]


def any_file(folder: Path, suffix: str, max_files: int = 500000) -> bool:
    """Is there a file ending with ``suffix`` (case-insensitive) under ``folder``? Stops at the first one."""
    suffix = suffix.lower()
    seen = 0
    for _dirpath, _dirnames, filenames in _walk(folder):
        if any(f.lower().endswith(suffix) and not f.startswith(".") for f in filenames):
            return True
        seen += len(filenames)
        if seen > max_files:
            break
    return False


def head_text(path: Path, nbytes: int = 65536) -> str:
    """The first bytes of a file as text ('' when unreadable)."""
    try:
        with open(path, "rb") as f:
            data = f.read(nbytes)
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")


class SchemeResolver:
    """Pick the scheme of a face from its point count, or check the count against the user's scheme.

    ``scheme`` is the user's ``--scheme`` (a registered name or a ``.json``/``.toml`` file) or None. An unknown
    scheme name is a whole-input error (``ValueError``); a point count that does not fit is a per-face issue.
    """

    def __init__(self, scheme: str | None, by_count: dict[int, str] | None = None):
        self.by_count = DEFAULT_SCHEME_BY_COUNT if by_count is None else by_count
        self.fixed: str | None = None
        self.fixed_n = 0
        if scheme is not None:
            try:
                s = get_scheme(str(scheme))
            except KeyError as e:
                raise ValueError(str(e.args[0])) from None
            self.fixed, self.fixed_n = s.name, s.num_landmarks

    def __call__(self, n: int) -> tuple[str | None, str | None]:
        """(scheme name, None) or (None, reason)."""
        if self.fixed is not None:
            if n != self.fixed_n:
                return None, f"{n} points, but scheme {self.fixed} has {self.fixed_n}"
            return self.fixed, None
        name = self.by_count.get(n)
        if name is None:
            known = ", ".join(f"{k} ({v})" for k, v in sorted(self.by_count.items())) or "none"
            return None, (f"{n} points: no built-in scheme for this count (built-in counts: {known}); "
                          "pass --scheme with a scheme file")
        return name, None


class FolderImages:
    """Image files of folders by stem, listed once per folder (case-insensitive suffix match)."""

    def __init__(self) -> None:
        self._cache: dict[Path, dict[str, Path]] = {}

    def stems(self, folder: Path) -> dict[str, Path]:
        d = self._cache.get(folder)
        if d is None:
            d = {}
            try:
                with os.scandir(folder) as it:
                    names = sorted(e.name for e in it)
            except OSError:
                names = []
            for name in names:
                stem, ext = os.path.splitext(name)
                if ext.lower() in _SUFFIXES and stem not in d:
                    d[stem] = folder / name
            self._cache[folder] = d
        return d

    def find(self, folder: Path, stem: str) -> Path | None:
        return self.stems(folder).get(stem)


class ImageResolver:
    """Resolve image paths that an annotation file gives relative to some root.

    Candidates are ``base / sub / rel`` for each base (in order) and each sub (in order); the first existing
    file wins and its (base, sub) is tried first next time, so a whole file costs about one ``stat`` per face.
    Absolute paths are used as they are. Backslashes (Windows paths) are turned into slashes. Bases should be
    absolute; the result is then absolute too.
    """

    def __init__(self, bases: Iterable[Path], subs: Sequence[str] = ("",)):
        seen: list[str] = []
        for b in bases:
            for s in subs:
                d = os.path.join(str(b), s) if s else str(b)
                if d not in seen:
                    seen.append(d)
        self.candidates = seen
        self._last: str | None = None

    def resolve(self, rel: str) -> Path | None:
        rel = rel.strip().replace("\\", "/")
        if not rel:
            return None
        if os.path.isabs(rel):
            return Path(rel) if os.path.isfile(rel) else None
        if self._last is not None:
            cand = os.path.join(self._last, rel)
            if os.path.isfile(cand):
                return Path(cand)
        for d in self.candidates:
            cand = os.path.join(d, rel)
            if os.path.isfile(cand):
                self._last = d
                return Path(cand)
        return None

    def where(self) -> str:
        """A short description of where images were looked for (for issue messages)."""
        shown = self.candidates[:4]
        more = len(self.candidates) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def ancestors(p: Path, n: int) -> list[Path]:
    """``p`` and up to ``n`` of its parents."""
    out = [p]
    for parent in p.parents:
        if len(out) > n:
            break
        out.append(parent)
    return out


def annotation_files(path: Path, suffix: str, require_suffix: bool = True) -> list[Path]:
    """The annotation file ``path`` itself, or every ``*suffix`` file below the folder ``path`` (recursive).

    Raises:
        ValueError: a missing path, a file of another suffix, or a folder without such files.
    """
    if path.is_file():
        if require_suffix and path.suffix.lower() != suffix:
            raise ValueError(f"{path}: not a {suffix} file")
        return [path]
    if path.is_dir():
        files = list_files(path, (suffix,), recursive=True)
        if not files:
            raise ValueError(f"{path}: no {suffix} files found (searched recursively)")
        return files
    raise ValueError(f"{path}: no such file or folder")
