"""MTFL (Zhang et al., ECCV 2014): ``training.txt`` / ``testing.txt``.

One face per line: ``path x1 x2 x3 x4 x5 y1 y2 y3 y4 y5 gender smile glasses pose``. Points: image-left eye centre,
image-right eye centre, nose tip, image-left mouth corner, image-right mouth corner (scheme ``5pt``), used as
written (treated as **0-based**; MTFL does not say). Paths use backslashes (``lfw_5590\\name.jpg``) relative to the
.txt's folder. The original files separate lines with CRLF followed by one space and have no final newline:
each line is stripped before it is split.

Attributes (``attrs``, as integers): gender 1 = male, 2 = female; smile 1 = yes, 2 = no; glasses 1 = yes,
2 = no; pose 1..5 = left profile, left, frontal, right, right profile. The pose is also a subset tag
(``pose-left-profile``, ``pose-left``, ``pose-frontal``, ``pose-right``, ``pose-right-profile``). Split: ``train``
for ``training.txt``, ``test`` for ``testing.txt`` (else from ``train``/``test`` in the file name). No box.

Input: the .txt itself or a folder holding ``training.txt`` and/or ``testing.txt`` (both are read).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, Reader, ReaderResult, register_reader
from facelm.datasets._common import has_image_suffix, head_text, issue, parse_float, SchemeResolver

__all__ = ["read_mtfl", "sniff_mtfl", "MTFL_READER", "MTFL_POSES"]

MTFL_POSES = {1: "pose-left-profile", 2: "pose-left", 3: "pose-frontal", 4: "pose-right", 5: "pose-right-profile"}
_FILES = ("training.txt", "testing.txt")


def _looks_like_line(line: str) -> bool:
    toks = line.split()
    return (len(toks) == 15 and has_image_suffix(toks[0].replace("\\", "/"))
            and all(parse_float(t) is not None for t in toks[1:]))


def _first_line(path: Path) -> str:
    return next((ln for ln in head_text(path, 4096).splitlines() if ln.strip()), "")


def _split_from_name(name: str) -> str | None:
    n = name.lower()
    if n.startswith("train"):
        return "train"
    if n.startswith("test"):
        return "test"
    return "train" if "train" in n else ("test" if "test" in n else None)


def _txt_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [path / n for n in _FILES if (path / n).is_file()]
        if files:
            return files
        raise ValueError(f"{path}: no MTFL training.txt or testing.txt in this folder")
    raise ValueError(f"{path}: no such file or folder")


def read_mtfl(path: Path, scheme: str | None = None) -> ReaderResult:
    """Read an MTFL list (or ``training.txt``/``testing.txt`` in a folder); see the module doc."""
    files = [Path(os.path.abspath(f)) for f in _txt_files(Path(path))]
    for f in files:
        if not _looks_like_line(_first_line(f)):
            raise ValueError(f"{f}: not an MTFL list (expected 'path x1..x5 y1..y5 gender smile glasses pose')")
    resolver = SchemeResolver(scheme, {5: "5pt"})
    sname, why = resolver(5)
    if sname is None:
        raise ValueError(f"MTFL has 5 points; {why}")

    def gen() -> ReaderResult:
        for f in files:
            split = _split_from_name(f.name)
            folder = f.parent
            with open(f, encoding="utf-8-sig", errors="replace", newline="") as fh:
                text = fh.read()
            for lineno, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
                toks = line.split()
                if not toks:
                    continue
                src = f"{f}:{lineno}"
                where = f"{f.name}: line {lineno}"
                if len(toks) != 15:
                    yield issue(src, f"{where}: {len(toks)} fields, expected 15 "
                                     "(path, x1..x5, y1..y5, gender, smile, glasses, pose)")
                    continue
                vals = [parse_float(t) for t in toks[1:]]
                if any(v is None for v in vals):
                    k = next(i for i, v in enumerate(vals) if v is None)
                    yield issue(src, f"{where}: field {k + 2} is not a finite number: {toks[k + 1][:20]!r}")
                    continue
                rel = toks[0].replace("\\", "/")
                img = Path(rel) if Path(rel).is_absolute() else folder / rel
                if not img.is_file():
                    yield issue(src, f"{where}: image not found: {rel}")
                    continue
                arr = np.asarray(vals, dtype=np.float64)
                gender, smile, glasses, pose = (int(round(v)) for v in arr[10:14])
                tags = [MTFL_POSES[pose]] if pose in MTFL_POSES else []
                yield RawFace(image=Path(os.path.abspath(img)), landmarks=np.stack([arr[:5], arr[5:10]], axis=1),
                              scheme=sname, split=split, subset=tags, source=src,
                              attrs={"gender": gender, "smile": smile, "glasses": glasses, "pose": pose})

    return gen()


def sniff_mtfl(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(sniff_mtfl(path / n) for n in _FILES if (path / n).is_file())
    if not path.is_file() or path.suffix.lower() != ".txt":
        return False
    return _looks_like_line(_first_line(path))


MTFL_READER = register_reader(Reader(
    name="mtfl",
    description="MTFL training.txt/testing.txt (5 points, gender/smile/glasses/pose attributes)",
    read=read_mtfl,
    sniff=sniff_mtfl,
    default_scheme="5pt",
))
