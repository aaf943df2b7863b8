"""Plain landmark CSV: ``image,x0,y0,x1,y1,...`` (e.g. Udacity/YouTube-Faces ``training_frames_keypoints.csv``).

* One face per row; the first column is the image path relative to the CSV's folder, the others are the
  coordinates as pairs, used as written (**0-based**).
* An optional header row is recognised when its first cell is not an image name (the Udacity header is
  ``,0,1,...,135``) or when any other cell is not a number. A header may name the columns: the image column
  ``image``/``image_name``/``file``/``filename``/``path``; coordinate columns ``x0,y0,...`` (also ``x_0``,
  ``0_x``, ``original_0_x``, ``part_0_x``); an optional box ``det_x1,det_y1,det_x2,det_y2`` (or ``box_``/``bbox_``)
  which becomes ``box`` with ``box_source="csv"``. Other named columns (width, height, ...) are ignored.
  Without x/y names every numeric column after the image column is a coordinate.
* CRLF line ends and a UTF-8 BOM are fine. Scheme from the point count.

Input: the CSV or a folder; in a folder every top-level ``*.csv`` that looks like a landmark CSV is read.
Note: the values are taken as 0-based whatever the file; a 1-based CSV (such as the derived
``landmarks_29pt.csv`` of helen29-train, which repeats the 1-based .mat values) must be read with its own format.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, Reader, ReaderResult, register_reader
from facelm.datasets._common import SchemeResolver, has_image_suffix, head_text, issue, list_files, parse_float

__all__ = ["read_plain_csv", "sniff_plain_csv", "CSV_READER"]

_IMAGE_COLS = ("image", "image_name", "imagename", "img", "file", "filename", "file_name", "path", "image_path")
_XY_PATTERNS = (re.compile(r"^([xy])_?(\d+)$"), re.compile(r"^(?:[a-z]+_)?(\d+)_([xy])$"))
_BOX = re.compile(r"^(?:det|box|bbox)_?([xy])([12])$")


def _is_header(row: list[str]) -> bool:
    if not row:
        return False
    first = row[0].strip().replace("\\", "/")
    if not has_image_suffix(first):
        return True
    return any(parse_float(c) is None for c in row[1:])


class _Layout:
    """Which columns hold what, decided from the header (or the column count)."""

    def __init__(self, header: list[str] | None, ncols: int):
        self.image = 0
        self.xy: list[tuple[int, int]] = []
        self.box: list[int] | None = None
        if header is not None:
            cols = [c.strip().lower() for c in header]
            for i, c in enumerate(cols):
                if c in _IMAGE_COLS:
                    self.image = i
                    break
            xs: dict[int, int] = {}
            ys: dict[int, int] = {}
            box: dict[str, int] = {}
            for i, c in enumerate(cols):
                mb = _BOX.match(c)
                if mb:
                    box[mb.group(1) + mb.group(2)] = i
                    continue
                for pat in _XY_PATTERNS:
                    m = pat.match(c)
                    if m:
                        axis, k = (m.group(1), int(m.group(2))) if pat is _XY_PATTERNS[0] else \
                            (m.group(2), int(m.group(1)))
                        (xs if axis == "x" else ys)[k] = i
                        break
            n = 0
            while n in xs and n in ys:
                n += 1
            if n >= 1 and n == len(xs) == len(ys):
                self.xy = [(xs[k], ys[k]) for k in range(n)]
            if all(k in box for k in ("x1", "y1", "x2", "y2")):
                self.box = [box["x1"], box["y1"], box["x2"], box["y2"]]
        if not self.xy:
            rest = [i for i in range(ncols) if i != self.image]
            self.xy = [(rest[2 * k], rest[2 * k + 1]) for k in range(len(rest) // 2)]
            self.odd = len(rest) % 2 == 1
        else:
            self.odd = False


def _rows(path: Path):
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        yield from enumerate(csv.reader(fh), start=1)


def _looks_like_landmark_csv(path: Path) -> bool:
    lines = [ln for ln in head_text(path, 1 << 16).splitlines() if ln.strip()][:2]
    if not lines:
        return False
    rows = list(csv.reader(lines))
    header = rows[0] if _is_header(rows[0]) else None
    data = rows[1] if header is not None else rows[0]
    if header is not None and len(rows) < 2:
        return False
    if header is not None and header[0].strip() == "" and all(parse_float(c) is not None for c in header[1:]):
        header = None  # the Udacity ",0,1,2,..." header: positional coordinates
    lay = _Layout(header, len(data))
    if lay.odd or len(lay.xy) < 3 or not has_image_suffix(data[lay.image].strip().replace("\\", "/")):
        return False
    return all(parse_float(data[i]) is not None for pair in lay.xy for i in pair if i < len(data))


def _csv_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [f for f in list_files(path, (".csv",)) if _looks_like_landmark_csv(f)]
        if files:
            return files
        raise ValueError(f"{path}: no landmark CSV (image,x0,y0,x1,y1,...) in this folder")
    raise ValueError(f"{path}: no such file or folder")


def read_plain_csv(path: Path, scheme: str | None = None) -> ReaderResult:
    """Read a plain landmark CSV (or every one directly in a folder); see the module doc."""
    files = [Path(os.path.abspath(f)) for f in _csv_files(Path(path))]
    for f in files:
        if not _looks_like_landmark_csv(f):
            raise ValueError(f"{f}: not a landmark CSV (expected rows 'image,x0,y0,x1,y1,...' with an optional "
                             "header)")
    resolver = SchemeResolver(scheme)

    def gen() -> ReaderResult:
        for f in files:
            lay = None
            ncols = 0
            for lineno, row in _rows(f):
                if not row or all(not c.strip() for c in row):
                    continue
                if lay is None:
                    header = row if _is_header(row) else None
                    if header is not None and header[0].strip() == "" and \
                            all(parse_float(c) is not None for c in header[1:]):
                        lay, ncols = _Layout(None, len(row)), len(row)
                    else:
                        lay, ncols = _Layout(header, len(row)), len(row)
                    flat = [i for pair in lay.xy for i in pair]
                    if header is not None:
                        continue
                src = f"{f}:{lineno}"
                where = f"{f.name}: line {lineno}"
                if len(row) != ncols:
                    yield issue(src, f"{where}: {len(row)} columns, expected {ncols}")
                    continue
                if lay.odd:
                    yield issue(src, f"{where}: odd number of coordinate columns")
                    continue
                try:
                    lm = np.array([row[i] for i in flat], dtype=np.float64).reshape(-1, 2)
                    ok = bool(np.isfinite(lm).all())
                except ValueError:
                    ok = False
                if not ok:
                    vals = [(parse_float(row[a]), parse_float(row[b])) for a, b in lay.xy]
                    bad = next((k for k, (x, y) in enumerate(vals) if x is None or y is None), 0)
                    yield issue(src, f"{where}: point {bad} is not a pair of finite numbers")
                    continue
                name, why = resolver(len(lm))
                if name is None:
                    yield issue(src, f"{where}: {why}")
                    continue
                rel = row[lay.image].strip().replace("\\", "/")
                img = Path(rel) if Path(rel).is_absolute() else f.parent / rel
                if not rel or not img.is_file():
                    yield issue(src, f"{where}: image not found: {rel!r}")
                    continue
                box = None
                if lay.box is not None:
                    bv = [parse_float(row[i]) for i in lay.box]
                    if all(v is not None for v in bv):
                        box = np.asarray(bv, dtype=np.float64)
                yield RawFace(image=Path(os.path.abspath(img)), landmarks=lm,
                              scheme=name, box=box, box_source="csv" if box is not None else "", source=src)

    return gen()


def sniff_plain_csv(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(_looks_like_landmark_csv(f) for f in list_files(path, (".csv",)))
    return path.is_file() and path.suffix.lower() == ".csv" and _looks_like_landmark_csv(path)


CSV_READER = register_reader(Reader(
    name="csv",
    description="plain CSV image,x0,y0,x1,y1,... (0-based; optional header naming the columns)",
    read=read_plain_csv,
    sniff=sniff_plain_csv,
    default_scheme=None,
))
