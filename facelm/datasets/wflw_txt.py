"""WFLW (Wu et al., CVPR 2018): ``list_98pt_rect_attr_train.txt`` / ``list_98pt_rect_attr_test.txt``.

One face per line, separated by spaces::

    x0 y0 ... x97 y97   x_min y_min x_max y_max   pose expression illumination make-up occlusion blur   path

196 floats (98 points, **0-based**, used as written), the face rectangle (box ``[x_min, y_min, x_max, y_max]``,
``box_source="wflw-rect"``), six 0/1 attribute flags and the image path relative to ``WFLW_images/``. Set flags
become subset tags ``pose``, ``expression``, ``illumination``, ``makeup``, ``occlusion``, ``blur`` (WFLW's six
test subsets) and all six go to ``attrs`` as 0/1. Lines of 196 floats + path only (no box/flags) are accepted too.

Split from the file name: ``train`` or ``test`` in it. Images are looked up in ``WFLW_images/`` (or ``images/``)
beside the .txt and up to three folders up (WFLW unpacks the lists to
``WFLW_annotations/list_98pt_rect_attr_train_test/`` beside ``WFLW_images/``). A folder given as input is searched
(three levels deep) for ``list_98pt_rect_attr_*.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, Reader, ReaderResult, register_reader
from facelm.datasets._common import ImageResolver, SchemeResolver, ancestors, head_text, issue, parse_float

__all__ = ["read_wflw_txt", "sniff_wflw_txt", "WFLW_TXT_READER", "WFLW_ATTRIBUTES"]

WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
_N = 98
_PATTERN = "list_98pt_rect_attr_*.txt"


def _split_from_name(name: str) -> str | None:
    n = name.lower()
    if "train" in n:
        return "train"
    if "test" in n:
        return "test"
    return None


def _looks_like_line(line: str) -> bool:
    toks = line.split()
    if len(toks) < 2 * _N + 1:
        return False
    nnum = 2 * _N + 10 if len(toks) >= 2 * _N + 11 else 2 * _N
    return all(parse_float(t) is not None for t in toks[:nnum]) and parse_float(toks[nnum]) is None


def _find_lists(folder: Path) -> list[Path]:
    out: list[Path] = []
    for depth in ("", "*/", "*/*/", "*/*/*/"):
        out.extend(p for p in folder.glob(depth + _PATTERN) if p.is_file())
    return sorted(set(out))


def _txt_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = _find_lists(path)
        if files:
            return files
        raise ValueError(f"{path}: no {_PATTERN} file in this folder (searched 3 levels deep)")
    raise ValueError(f"{path}: no such file or folder")


def read_wflw_txt(path: Path, scheme: str | None = None) -> ReaderResult:
    """Read a WFLW list file (or every ``list_98pt_rect_attr_*.txt`` under a folder); see the module doc."""
    files = [Path(os.path.abspath(f)) for f in _txt_files(Path(path))]
    for f in files:
        first = next((ln for ln in head_text(f, 1 << 16).splitlines() if ln.strip()), "")
        if not _looks_like_line(first):
            raise ValueError(f"{f}: not a WFLW list file (expected 196 numbers, 4 box values, 6 flags and a path "
                             "per line)")
    resolver = SchemeResolver(scheme, {98: "wflw98"})
    sname, why = resolver(_N)
    if sname is None:
        raise ValueError(f"WFLW has 98 points; {why}")

    def gen() -> ReaderResult:
        for f in files:
            split = _split_from_name(f.name)
            images = ImageResolver(ancestors(f.parent, 3), ("WFLW_images", "images", ""))
            with open(f, encoding="utf-8-sig", errors="replace") as fh:
                for lineno, line in enumerate(fh, start=1):
                    toks = line.split()
                    if not toks:
                        continue
                    src = f"{f}:{lineno}"
                    where = f"{f.name}: line {lineno}"
                    has_attr = len(toks) >= 2 * _N + 11
                    nnum = 2 * _N + 10 if has_attr else 2 * _N
                    if len(toks) < 2 * _N + 1 or parse_float(toks[nnum]) is not None:
                        yield issue(src, f"{where}: {len(toks)} fields, expected {2 * _N + 11} "
                                         "(196 coordinates, 4 box values, 6 flags, image path)")
                        continue
                    vals = [parse_float(t) for t in toks[:nnum]]
                    if any(v is None for v in vals):
                        k = next(i for i, v in enumerate(vals) if v is None)
                        yield issue(src, f"{where}: field {k + 1} is not a finite number: {toks[k][:20]!r}")
                        continue
                    rel = " ".join(toks[nnum:])
                    arr = np.asarray(vals, dtype=np.float64)
                    img = images.resolve(rel)
                    if img is None:
                        yield issue(src, f"{where}: image not found: {rel} (looked under {images.where()})")
                        continue
                    box, tags, attrs = None, [], {}
                    if has_attr:
                        box = arr[2 * _N:2 * _N + 4].copy()
                        flags = [int(round(v)) for v in arr[2 * _N + 4:2 * _N + 10]]
                        attrs = dict(zip(WFLW_ATTRIBUTES, flags))
                        tags = [a for a, v in attrs.items() if v]
                    yield RawFace(image=Path(os.path.abspath(img)), landmarks=arr[:2 * _N].reshape(_N, 2),
                                  scheme=sname, box=box, box_source="wflw-rect" if box is not None else "",
                                  split=split, subset=tags, source=src, attrs=attrs)

    return gen()


def sniff_wflw_txt(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return bool(_find_lists(path))
    if not path.is_file() or path.suffix.lower() != ".txt":
        return False
    first = next((ln for ln in head_text(path, 1 << 16).splitlines() if ln.strip()), "")
    return _looks_like_line(first)


WFLW_TXT_READER = register_reader(Reader(
    name="wflw-txt",
    description="WFLW list_98pt_rect_attr_*.txt (98 points 0-based, rect, 6 attribute flags, path)",
    read=read_wflw_txt,
    sniff=sniff_wflw_txt,
    default_scheme="wflw98",
))
