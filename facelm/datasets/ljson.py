"""menpo LJSON landmark files (``<stem>.ljson`` beside ``<stem>.<image suffix>``).

* v3: ``{"version": 3, "groups": {"<group>": {"landmarks": {"points": [[y, x], ...], "connectivity": ...},
  "labels": [...]}}}``. The group ``LJSON`` is used when present, else the first group.
* v1/v2: ``{"version": 1|2, "landmarks": {"points": [[y, x], ...]}, "labels": [...]}``.

Points are menpo **(y, x)** pairs, **0-based** pixel coordinates (menpo's own convention); the reader swaps them
to (x, y). ``null`` points (menpo's missing landmarks) become NaN with ``visible`` False. Scheme from the count.
Input: one ``.ljson`` or a folder searched recursively.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, Reader, ReaderResult, register_reader
from facelm.datasets._common import FolderImages, SchemeResolver, annotation_files, any_file, issue

__all__ = ["parse_ljson", "read_ljson", "sniff_ljson", "LJSON_READER"]


def parse_ljson(path: Path) -> tuple[np.ndarray | None, str | None]:
    """-> (``(N, 2)`` (x, y) float64 with NaN for null points, None) or (None, one-line reason)."""
    name = path.name
    try:
        with open(path, encoding="utf-8-sig") as fh:
            d = json.load(fh)
    except OSError as e:
        return None, f"{name}: cannot read file ({e.strerror or e})"
    except ValueError as e:
        return None, f"{name}: not valid JSON ({e})"
    if not isinstance(d, dict):
        return None, f"{name}: not a menpo LJSON object"
    lms = None
    groups = d.get("groups")
    if isinstance(groups, dict) and groups:
        g = groups.get("LJSON") or next(iter(groups.values()))
        lms = g.get("landmarks") if isinstance(g, dict) else None
    elif isinstance(d.get("landmarks"), dict):
        lms = d["landmarks"]
    pts = lms.get("points") if isinstance(lms, dict) else None
    if not isinstance(pts, list) or not pts:
        return None, f"{name}: no landmarks.points (menpo LJSON v1-v3)"
    out = np.full((len(pts), 2), np.nan)
    for i, p in enumerate(pts):
        if p is None or (isinstance(p, list) and all(v is None for v in p)):
            continue
        if not (isinstance(p, list) and len(p) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
                and all(np.isfinite(p))):
            return None, f"{name}: point {i} is not a [y, x] pair of finite numbers: {str(p)[:40]}"
        out[i] = (p[1], p[0])
    return out, None


def read_ljson(path: Path, scheme: str | None = None) -> ReaderResult:
    """Read one ``.ljson`` file or every ``.ljson`` under a folder; see the module doc."""
    path = Path(os.path.abspath(path))
    files = annotation_files(path, ".ljson", require_suffix=False)
    resolver = SchemeResolver(scheme)

    def gen() -> ReaderResult:
        images = FolderImages()
        for f in files:
            lm, err = parse_ljson(f)
            if err:
                yield issue(f, err)
                continue
            name, why = resolver(len(lm))
            if name is None:
                yield issue(f, f"{f.name}: {why}")
                continue
            img = images.find(f.parent, f.stem)
            if img is None:
                yield issue(f, f"{f.name}: no image named {f.stem}.<image suffix> beside it")
                continue
            vis = np.isfinite(lm).all(axis=1)
            yield RawFace(image=img, landmarks=lm, scheme=name, visible=None if vis.all() else vis, source=str(f))

    return gen()


def sniff_ljson(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any_file(path, ".ljson")
    return path.is_file() and path.suffix.lower() == ".ljson"


LJSON_READER = register_reader(Reader(
    name="ljson",
    description="menpo LJSON (v1-v3; (y, x) points, 0-based) beside the images",
    read=read_ljson,
    sniff=sniff_ljson,
    default_scheme=None,
))
