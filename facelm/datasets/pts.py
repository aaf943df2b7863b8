"""iBUG ``.pts`` files next to their images (300W, LFPW, HELEN, AFW, IBUG, Menpo, 300VW, InfAnFace, UTKFace).

Layout: ``<stem>.pts`` beside an image ``<stem>.<any image suffix>`` in the same folder, found recursively under
the given folder. 300VW keeps the points in ``<video>/annot/*.pts`` and the frames in ``<video>/imgs/``: when no
image is beside a ``.pts`` in a folder called ``annot`` (or ``annotations``), the sibling ``imgs``/``images``
folder is searched.

File format::

    version: 1
    n_points:  68
    {
    x y        <- one pair per line, 1-based (iBUG/MATLAB convention)
    }

Coordinates are **1-based**; the reader subtracts 1. The scheme follows from the point count (68 -> 300w68,
29 -> cofw29, 19 -> aflw19, 98 -> wflw98, 5 -> 5pt) unless a scheme is given, in which case the count must match.
Split and subset tags come from the path (:func:`facelm.datasets.w300.w300_membership`); outside 300W the split
is None and the tag is the first folder below the given root (e.g. InfAnFace ``ads``/``google2``/``youtube2``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, Reader, ReaderResult, register_reader
from facelm.datasets._common import (FolderImages, SchemeResolver, annotation_files, any_file, issue, parse_float)
from facelm.datasets.w300 import w300_membership

__all__ = ["parse_pts", "read_pts", "sniff_pts", "PTS_READER"]

_ANNOT_DIRS = ("annot", "annots", "annotation", "annotations")
_IMAGE_DIRS = ("imgs", "images", "img", "frames")


_HEADER = re.compile(  # optional "version:" / "n_points: N" lines, then the "{" line
    r"\A(?:[ \t]*(?:version[ \t]*:[^\n]*|n_points[ \t]*:[ \t]*(\d+)[ \t]*|)\r?\n)*?"
    r"[ \t]*\{[ \t]*\r?\n", re.IGNORECASE)
_BODY = re.compile(r"(?:[ \t]*[^\s{}]+[ \t]+[^\s{}]+[ \t]*\r?\n|[ \t]*\r?\n)*[ \t]*\}")


def _fast_pts(text: str) -> np.ndarray | None:
    """The common well-formed case in a few C-level calls; None sends the file to the detailed parser."""
    m = _HEADER.match(text)
    if m is None:
        return None
    b = _BODY.match(text, m.end())
    if b is None:
        return None
    toks = text[m.end():b.end() - 1].split()
    if not toks:
        return None
    try:
        arr = np.array(toks, dtype=np.float64).reshape(-1, 2)
    except ValueError:
        return None
    if not np.all(np.isfinite(arr)) or (m.group(1) is not None and int(m.group(1)) != len(arr)):
        return None
    return arr


def parse_pts(path: Path) -> tuple[np.ndarray | None, str | None]:
    """Parse an iBUG ``.pts`` file -> (``(N, 2)`` array **as written** (1-based), None) or (None, reason).

    The reason is one line naming the file and, where it applies, the line number.
    """
    name = path.name
    try:
        text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    except OSError as e:
        return None, f"{name}: cannot read file ({e.strerror or e})"
    fast = _fast_pts(text)
    if fast is not None:
        return fast, None
    lines = text.splitlines()
    declared: int | None = None
    start = end = None
    for i, line in enumerate(lines):
        s = line.strip()
        if start is None:
            if s.lower().startswith("n_points"):
                val = s.split(":", 1)[1].strip() if ":" in s else ""
                try:
                    declared = int(val)
                except ValueError:
                    return None, f"{name}: line {i + 1}: bad n_points value {val!r}"
            elif s.startswith("{"):
                start = i
        elif s.startswith("}"):
            end = i
            break
    if start is None:
        return None, f"{name}: not an iBUG .pts file (no '{{' line)"
    if end is None:
        return None, f"{name}: no closing '}}' line (truncated file?)"
    pts: list[tuple[float, float]] = []
    for i in range(start + 1, end):
        toks = lines[i].split()
        if not toks:
            continue
        if len(toks) != 2:
            return None, f"{name}: line {i + 1}: expected two numbers 'x y', got {lines[i].strip()[:40]!r}"
        x, y = parse_float(toks[0]), parse_float(toks[1])
        if x is None or y is None:
            bad = toks[0] if x is None else toks[1]
            return None, f"{name}: line {i + 1}: not a finite number: {bad[:20]!r}"
        pts.append((x, y))
    if declared is not None and declared != len(pts):
        return None, f"{name}: n_points says {declared} but the file has {len(pts)} points"
    if not pts:
        return None, f"{name}: no points"
    return np.asarray(pts, dtype=np.float64), None


def _find_image(images: FolderImages, pts_file: Path) -> Path | None:
    folder, stem = pts_file.parent, pts_file.stem
    img = images.find(folder, stem)
    if img is None and folder.name.lower() in _ANNOT_DIRS:
        for d in _IMAGE_DIRS:
            img = images.find(folder.parent / d, stem)
            if img is not None:
                break
    return img


def _membership(root: Path, rel: Path) -> tuple[str | None, list[str]]:
    # The root's own two last folder names take part, so that giving ".../300W/lfpw/testset" still matches.
    prefix = [p for p in (root.parent.name, root.name) if p]
    split, tags = w300_membership("/".join([*prefix, *rel.parts]))
    if split is None and not tags and len(rel.parts) > 1:
        tags = [rel.parts[0]]
    return split, tags


def read_pts(path: Path, scheme: str | None = None) -> ReaderResult:
    """Read one ``.pts`` file or every ``.pts`` under a folder (see the module doc)."""
    path = Path(os.path.abspath(path))
    files = annotation_files(path, ".pts")
    root = path.parent if path.is_file() else path
    resolver = SchemeResolver(scheme)

    def gen() -> ReaderResult:
        images = FolderImages()
        for f in files:
            pts, err = parse_pts(f)
            if err:
                yield issue(f, err)
                continue
            name, why = resolver(len(pts))
            if name is None:
                yield issue(f, f"{f.name}: {why}")
                continue
            img = _find_image(images, f)
            if img is None:
                yield issue(f, f"{f.name}: no image named {f.stem}.<image suffix> beside it"
                               + (" or in ../imgs" if f.parent.name.lower() in _ANNOT_DIRS else ""))
                continue
            if f == path:  # a single file: its last folders decide the 300W membership, no folder tag
                split, tags = w300_membership("/".join(f.parts[-4:]))
            else:
                split, tags = _membership(root, f.relative_to(root))
            yield RawFace(image=img, landmarks=pts - 1.0, scheme=name, split=split, subset=tags, source=str(f))

    return gen()


def sniff_pts(path: Path) -> bool:
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != ".pts":
            return False
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096)
        except OSError:
            return False
        return b"{" in head
    return path.is_dir() and any_file(path, ".pts")


PTS_READER = register_reader(Reader(
    name="pts",
    description="iBUG .pts files (1-based) beside their images, searched recursively (300W, Menpo, 300VW, ...)",
    read=read_pts,
    sniff=sniff_pts,
    default_scheme=None,
))
