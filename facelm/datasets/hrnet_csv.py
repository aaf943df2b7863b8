"""HRNet-style landmark CSV (HRNet-Facial-Landmark-Detection ``data/<set>/face_landmarks_*.csv``).

Header ``image_name,scale,center_w,center_h[,box_size],original_0_x,original_0_y,...`` (columns are found by
name, so ``box_size`` may sit anywhere). One face per row. Points are used as written and treated as **0-based**
(HRNet and mmpose feed them to the network without an offset; for 300W they are the numbers of the iBUG .pts
files, see ``docs/formats.md``).

Box: a square of side ``scale * 200`` centred on ``(center_w, center_h)`` (``box_source="hrnet-center-scale"``),
or, when a ``box_size`` column is present (HRNet's AFLW CSVs), a square of side ``box_size`` centred there
(``box_source="aflw-box-size"``; AFLW-Full normalises by ``box_size``). ``center``, ``scale`` and ``box_size``
are kept in ``attrs``.

Images: ``image_name`` is relative to an image root. The reader tries, in order, the CSV's folder, its parent
and grandparent, each as is and with an ``images/`` subfolder (HRNet keeps ``data/300w/face_landmarks_*.csv``
beside ``data/300w/images/``). ``read_hrnet_csv(..., image_root=DIR)`` puts DIR first. Rows whose image is not
found give a ReadIssue "image not found". 300W split and tags come from ``w300_membership(image_name)``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, ReadIssue, Reader, ReaderResult, register_reader
from facelm.datasets._common import (ImageResolver, SchemeResolver, ancestors, head_text, issue, list_files,
                                     parse_float, square_box)
from facelm.datasets.w300 import w300_membership

__all__ = ["read_hrnet_csv_annotations", "read_hrnet_csv", "sniff_hrnet_csv", "HRNET_CSV_READER"]

_REQUIRED = ("image_name", "scale", "center_w", "center_h")


def _is_hrnet_header(row: list[str]) -> bool:
    cols = [c.strip().lower() for c in row]
    return all(c in cols for c in _REQUIRED) and "original_0_x" in cols


def read_hrnet_csv_annotations(path: str | Path, issues: list[ReadIssue] | None = None) -> list[dict]:
    """Parse an HRNet landmark CSV without looking for images.

    Returns one dict per usable row: ``image_name`` (str, as written, ``/`` separators), ``center``
    (``(2,)`` float64), ``scale`` (float), ``box_size`` (float or None), ``landmarks`` (``(L, 2)`` float64, as
    written = 0-based) and ``line`` (1-based line number in the file).

    Rows that cannot be used (wrong column count, non-numbers) are appended to ``issues`` as ReadIssue when a
    list is given; without a list the first bad row raises ``ValueError``. A file without the HRNet header
    raises ``ValueError``.
    """
    path = Path(path)
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    out: list[dict] = []
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or not _is_hrnet_header(header):
            raise ValueError(f"{path}: not an HRNet landmark CSV (the header must have "
                             "image_name, scale, center_w, center_h, original_0_x, ...)")
        cols = [c.strip().lower() for c in header]
        idx = {c: i for i, c in enumerate(cols)}
        n = 0
        while f"original_{n}_x" in idx and f"original_{n}_y" in idx:
            n += 1
        xi = [idx[f"original_{k}_x"] for k in range(n)]
        yi = [idx[f"original_{k}_y"] for k in range(n)]
        bs = idx.get("box_size")
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            err = None
            if len(row) != len(cols):
                err = f"{path.name}: line {lineno}: {len(row)} columns, the header has {len(cols)}"
            else:
                vals = {}
                for key in ("scale", "center_w", "center_h") + (("box_size",) if bs is not None else ()):
                    vals[key] = parse_float(row[idx[key]])
                xs = [parse_float(row[i]) for i in xi]
                ys = [parse_float(row[i]) for i in yi]
                bad = [k for k, v in vals.items() if v is None]
                if bad or any(v is None for v in xs) or any(v is None for v in ys):
                    what = bad[0] if bad else "a landmark coordinate"
                    err = f"{path.name}: line {lineno}: {what} is not a finite number"
            if err:
                if issues is None:
                    raise ValueError(err)
                issues.append(issue(f"{path}:{lineno}", err))
                continue
            out.append({
                "image_name": row[idx["image_name"]].strip().replace("\\", "/"),
                "center": np.array([vals["center_w"], vals["center_h"]], dtype=np.float64),
                "scale": float(vals["scale"]),
                "box_size": float(vals["box_size"]) if bs is not None else None,
                "landmarks": np.stack([np.asarray(xs, np.float64), np.asarray(ys, np.float64)], axis=1),
                "line": lineno,
            })
    return out


def _csv_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [f for f in list_files(path, (".csv",)) if sniff_hrnet_csv(f)]
        if files:
            return files
        raise ValueError(f"{path}: no HRNet landmark CSV (header image_name,scale,center_w,center_h,...) in "
                         "this folder")
    raise ValueError(f"{path}: no such file or folder")


def read_hrnet_csv(path: Path, scheme: str | None = None, *, image_root: str | Path | None = None
                   ) -> ReaderResult:
    """Read an HRNet CSV (or every HRNet CSV directly in a folder); see the module doc."""
    path = Path(os.path.abspath(path))
    files = _csv_files(path)
    resolver = SchemeResolver(scheme)
    parsed = []
    for f in files:  # parse eagerly: a file that is not HRNet CSV at all raises here, not mid-iteration
        issues: list[ReadIssue] = []
        parsed.append((f, read_hrnet_csv_annotations(f, issues), issues))

    def gen() -> ReaderResult:
        for f, rows, issues in parsed:
            yield from issues
            bases = ([Path(os.path.abspath(image_root))] if image_root else []) + ancestors(f.parent, 2)
            images = ImageResolver(bases, ("", "images"))
            for r in rows:
                src = f"{f}:{r['line']}"
                name, why = resolver(len(r["landmarks"]))
                if name is None:
                    yield issue(src, f"{f.name}: line {r['line']}: {why}")
                    continue
                img = images.resolve(r["image_name"])
                if img is None:
                    yield issue(src, f"{f.name}: line {r['line']}: image not found: {r['image_name']} "
                                     f"(looked under {images.where()})")
                    continue
                c = r["center"]
                if r["box_size"] is not None:
                    box, box_source = square_box(c[0], c[1], r["box_size"]), "aflw-box-size"
                else:
                    box, box_source = square_box(c[0], c[1], r["scale"] * 200.0), "hrnet-center-scale"
                split, tags = w300_membership(r["image_name"])
                attrs = {"center": [float(c[0]), float(c[1])], "scale": r["scale"]}
                if r["box_size"] is not None:
                    attrs["box_size"] = r["box_size"]
                yield RawFace(image=Path(os.path.abspath(img)), landmarks=r["landmarks"], scheme=name, box=box,
                              box_source=box_source, split=split, subset=tags, source=src, attrs=attrs)

    return gen()


def sniff_hrnet_csv(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(sniff_hrnet_csv(f) for f in list_files(path, (".csv",)))
    if not path.is_file() or path.suffix.lower() != ".csv":
        return False
    first = head_text(path, 16384).splitlines()[:1]
    if not first:
        return False
    return _is_hrnet_header(next(csv.reader(first)))


HRNET_CSV_READER = register_reader(Reader(
    name="hrnet-csv",
    description="HRNet landmark CSV (image_name,scale,center_w,center_h,original_0_x,...; 0-based)",
    read=read_hrnet_csv,
    sniff=sniff_hrnet_csv,
    default_scheme=None,
))
